//! Chunked uploads into a file store, without a server: the library's
//! answers to every way a client can get an upload wrong.

use super::*;
use crate::datajoint::hash::attachment;
use std::path::{Path, PathBuf};

fn tmpdir(tag: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let d = std::env::temp_dir().join(format!("dj-chunked-{tag}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.canonicalize().unwrap()
}

struct Setup {
    cfg: Config,
    store: PathBuf,
    uploads: PathBuf,
}

fn setup(extra: &str) -> Setup {
    let (store, uploads) = (tmpdir("store"), tmpdir("uploads"));
    let text =
        format!(r#"{{"stores": {{"f": {{"protocol": "file", "location": "{}"}}}}, "upload_dir": "{}"{extra}}}"#, store.display(), uploads.display());
    Setup { cfg: Config::parse(Path::new("/etc/t.json"), &text).unwrap(), store, uploads }
}

const ME: &str = "me@%";

fn data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 % 251) as u8).collect()
}

fn finished(json: &str) -> (String, u64) {
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    (v["hash"].as_str().unwrap().to_string(), v["size"].as_u64().unwrap())
}

#[test]
fn parts_in_any_order_and_resent_make_the_object_and_move_it_into_place() {
    let s = setup("");
    let bytes = data(2500);
    let id = open(&s.cfg, "f", "lab", Some("a.bin"), 1000, ME).unwrap();
    for n in [3u64, 1, 2, 1] {
        let chunk = &bytes[(n as usize - 1) * 1000..(n as usize * 1000).min(bytes.len())];
        assert_eq!(part(&s.cfg, &id, ME, n, chunk).unwrap(), hash::to_hex(&hash::digest(b"", chunk)));
    }
    let want = attachment("a.bin", &bytes);
    let (h, size) = finished(&finish(&s.cfg, &id, ME, 3, None, Some(want)).unwrap());
    assert_eq!((h.as_str(), size), (hash::to_hex(&want).as_str(), 2500));
    let key = Object::Attach { schema: "lab".into(), hash: want, name: "a.bin".into() }.key(&[2, 2]);
    assert_eq!(std::fs::read(s.store.join(key)).unwrap(), bytes);
    // a repeated finish (a lost answer) answers the same
    assert_eq!(finished(&finish(&s.cfg, &id, ME, 3, None, None).unwrap()).0, h);
    assert!(part(&s.cfg, &id, ME, 1, &bytes[..1000]).unwrap_err().to_string().contains("takes no more parts"));
    assert!(!s.uploads.join(&id).join("data").exists(), "the data file was moved, not copied");
}

#[test]
fn a_last_part_sent_again_shorter_leaves_nothing_of_the_longer_one() {
    let s = setup("");
    let bytes = data(1800);
    let id = open(&s.cfg, "f", "lab", Some("t.bin"), 1000, ME).unwrap();
    part(&s.cfg, &id, ME, 1, &bytes[..1000]).unwrap();
    part(&s.cfg, &id, ME, 2, &data(1000)).unwrap();
    part(&s.cfg, &id, ME, 2, &bytes[1000..]).unwrap();
    let want = attachment("t.bin", &bytes);
    finish(&s.cfg, &id, ME, 2, None, Some(want)).unwrap();
    let key = Object::Attach { schema: "lab".into(), hash: want, name: "t.bin".into() }.key(&[2, 2]);
    assert_eq!(std::fs::read(s.store.join(key)).unwrap(), bytes);
}

#[test]
fn finish_names_missing_short_extra_and_mismatching_parts() {
    let s = setup("");
    let bytes = data(3000);
    let id = open(&s.cfg, "f", "lab", Some("b.bin"), 1000, ME).unwrap();
    part(&s.cfg, &id, ME, 1, &bytes[..1000]).unwrap();
    part(&s.cfg, &id, ME, 3, &bytes[2000..]).unwrap();
    let e = finish(&s.cfg, &id, ME, 3, None, None).unwrap_err().to_string();
    assert!(e.contains("part 2 of 3 was never received"), "{e}");
    part(&s.cfg, &id, ME, 2, &bytes[1000..1500]).unwrap();
    let e = finish(&s.cfg, &id, ME, 3, None, None).unwrap_err().to_string();
    assert!(e.contains("part 2 is not 1000 bytes long"), "{e}");
    part(&s.cfg, &id, ME, 2, &bytes[1000..2000]).unwrap();
    let e = finish(&s.cfg, &id, ME, 2, None, None).unwrap_err().to_string();
    assert!(e.contains("part 3 was received, but the finish says the upload has 2 parts"), "{e}");
    let mut list: Vec<String> = bytes.chunks(1000).map(|c| hash::to_hex(&hash::digest(b"", c))).collect();
    list[1] = "0".repeat(32);
    let e = finish(&s.cfg, &id, ME, 3, Some(&list.join(",")), None).unwrap_err().to_string();
    assert!(e.contains("part 2 differs from your list"), "{e}");
    let e = finish(&s.cfg, &id, ME, 3, None, Some([9; 16])).unwrap_err().to_string();
    assert!(e.contains("checksum mismatch"), "{e}");
    // every failure above left the upload open: the right finish works
    list[1] = hash::to_hex(&hash::digest(b"", &bytes[1000..2000]));
    let (h, _) = finished(&finish(&s.cfg, &id, ME, 3, Some(&list.join(" ")), None).unwrap());
    assert_eq!(h, hash::to_hex(&attachment("b.bin", &bytes)));
}

#[test]
fn a_replaced_part_restarts_the_hash() {
    let s = setup("");
    let (old, new) = (data(2000), data(2000).iter().map(|b| b ^ 0x55).collect::<Vec<u8>>());
    let id = open(&s.cfg, "f", "lab", None, 1000, ME).unwrap();
    let blob = |b: &[u8]| [b"dj0\0".as_slice(), &b[4..]].concat();
    let (old, new) = (blob(&old), blob(&new));
    part(&s.cfg, &id, ME, 1, &old[..1000]).unwrap();
    part(&s.cfg, &id, ME, 2, &old[1000..]).unwrap();
    part(&s.cfg, &id, ME, 1, &new[..1000]).unwrap();
    part(&s.cfg, &id, ME, 2, &new[1000..]).unwrap();
    let (h, _) = finished(&finish(&s.cfg, &id, ME, 2, None, None).unwrap());
    assert_eq!(h, hash::to_hex(&hash::digest(b"", &new)));
    let id = open(&s.cfg, "f", "lab", None, 1000, ME).unwrap();
    let e = part(&s.cfg, &id, ME, 1, b"not a blob").unwrap_err().to_string();
    assert!(e.contains("not a serialized DataJoint blob"), "{e}");
}

#[test]
fn other_accounts_see_no_upload_and_limits_hold() {
    let s = setup(r#", "max_open_uploads": 2, "max_upload_bytes": 2500"#);
    let id = open(&s.cfg, "f", "lab", Some("c.bin"), 1000, ME).unwrap();
    let theirs = |e: Error| e.to_string();
    let e = theirs(part(&s.cfg, &id, "other@%", 1, b"x").unwrap_err());
    assert_eq!(e, format!("upload '{id}' of account 'other@%' does not exist"));
    assert_eq!(theirs(finish(&s.cfg, &id, "other@%", 1, None, None).unwrap_err()), e);
    assert_eq!(theirs(status(&s.cfg, &id, "other@%").unwrap_err()), e);
    assert_eq!(theirs(abort(&s.cfg, &id, "other@%").unwrap_err()), e);
    let unknown = "0".repeat(32);
    assert_eq!(theirs(part(&s.cfg, &unknown, "other@%", 1, b"x").unwrap_err()), format!("upload '{unknown}' of account 'other@%' does not exist"));
    assert!(theirs(part(&s.cfg, "../../etc", ME, 1, b"x").unwrap_err()).contains("does not exist"));

    let e = part(&s.cfg, &id, ME, 3, &data(1000)).unwrap_err().to_string();
    assert!(e.contains("beyond the largest object allowed, 2500 bytes (config key max_upload_bytes)"), "{e}");
    assert!(part(&s.cfg, &id, ME, 1, &data(1001)).unwrap_err().to_string().contains("more than the upload's part size"));
    assert!(part(&s.cfg, &id, ME, 0, b"x").is_err() && part(&s.cfg, &id, ME, 10_001, b"x").is_err());

    open(&s.cfg, "f", "lab", Some("d.bin"), 1000, ME).unwrap();
    let e = open(&s.cfg, "f", "lab", Some("e.bin"), 1000, ME).unwrap_err().to_string();
    assert!(e.contains("has 2 unfinished uploads, the most allowed (config key max_open_uploads)"), "{e}");
    open(&s.cfg, "f", "lab", Some("e.bin"), 1000, "other@%").unwrap();
    abort(&s.cfg, &id, ME).unwrap();
    assert!(!s.uploads.join(&id).exists());
    open(&s.cfg, "f", "lab", Some("e.bin"), 1000, ME).unwrap();
}

#[test]
fn status_lists_parts_and_expired_uploads_are_refused_then_removed() {
    let s = setup(r#", "upload_expiry": 1"#);
    let id = open(&s.cfg, "f", "lab", Some("f.bin"), 10, ME).unwrap();
    part(&s.cfg, &id, ME, 2, b"0123456789").unwrap();
    let st: serde_json::Value = serde_json::from_str(&status(&s.cfg, &id, ME).unwrap()).unwrap();
    assert_eq!(st["parts"][0]["part"], 2);
    assert_eq!(st["received_bytes"], 10);
    assert_eq!(expire(&s.cfg).unwrap(), 0);
    std::thread::sleep(Duration::from_millis(2100));
    let e = part(&s.cfg, &id, ME, 1, b"0123456789").unwrap_err().to_string();
    assert!(e.contains("expired") && e.contains("upload_expiry"), "{e}");
    assert_eq!(expire(&s.cfg).unwrap(), 1);
    assert!(!s.uploads.join(&id).exists());
    assert!(status(&s.cfg, &id, ME).unwrap_err().to_string().contains("does not exist"));
}

#[test]
fn without_an_upload_dir_chunked_uploads_are_off() {
    let store = tmpdir("off");
    let text = format!(r#"{{"stores": {{"f": {{"protocol": "file", "location": "{}"}}}}}}"#, store.display());
    let cfg = Config::parse(Path::new("/etc/t.json"), &text).unwrap();
    assert_eq!(open(&cfg, "f", "lab", None, 10, ME).unwrap_err().to_string(), "chunked uploads are off: /etc/t.json has no upload_dir");
    assert!(expire(&cfg).is_err());
}
