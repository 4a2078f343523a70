//! DataJoint's external-storage format: the MD5 identities of objects and
//! where, under which names, DataJoint 0.14 keeps them in a store.

pub mod hash;
pub mod layout;
