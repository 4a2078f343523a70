/* The UDF_ARGS and UDF_INIT layout the library is built for (64-bit Linux),
 * as byte offsets and sizes. Written once here: build.rs turns these lines
 * into the constants src/ffi.rs asserts its own structures against, and the
 * C checks assert the servers' definitions against them. */
#define DJ_UDF_ARGS_SIZE 64
#define DJ_UDF_ARGS_ARG_COUNT 0
#define DJ_UDF_ARGS_ARG_TYPE 8
#define DJ_UDF_ARGS_ARGS 16
#define DJ_UDF_ARGS_LENGTHS 24
#define DJ_UDF_ARGS_MAYBE_NULL 32
#define DJ_UDF_ARGS_ATTRIBUTES 40
#define DJ_UDF_ARGS_ATTRIBUTE_LENGTHS 48
#define DJ_UDF_ARGS_EXTENSION 56
#define DJ_UDF_INIT_SIZE 40
#define DJ_UDF_INIT_MAYBE_NULL 0
#define DJ_UDF_INIT_DECIMALS 4
#define DJ_UDF_INIT_MAX_LENGTH 8
#define DJ_UDF_INIT_PTR 16
#define DJ_UDF_INIT_CONST_ITEM 24
#define DJ_UDF_INIT_EXTENSION 32

/* Asserts that a server's two structures have this layout. */
#define DJ_CHECK_UDF_LAYOUT(ARGS, INIT)                                                                   \
  _Static_assert(sizeof(ARGS) == DJ_UDF_ARGS_SIZE, "UDF_ARGS size");                                      \
  _Static_assert(offsetof(ARGS, arg_count) == DJ_UDF_ARGS_ARG_COUNT, "UDF_ARGS.arg_count");               \
  _Static_assert(offsetof(ARGS, arg_type) == DJ_UDF_ARGS_ARG_TYPE, "UDF_ARGS.arg_type");                  \
  _Static_assert(offsetof(ARGS, args) == DJ_UDF_ARGS_ARGS, "UDF_ARGS.args");                              \
  _Static_assert(offsetof(ARGS, lengths) == DJ_UDF_ARGS_LENGTHS, "UDF_ARGS.lengths");                     \
  _Static_assert(offsetof(ARGS, maybe_null) == DJ_UDF_ARGS_MAYBE_NULL, "UDF_ARGS.maybe_null");            \
  _Static_assert(offsetof(ARGS, attributes) == DJ_UDF_ARGS_ATTRIBUTES, "UDF_ARGS.attributes");            \
  _Static_assert(offsetof(ARGS, attribute_lengths) == DJ_UDF_ARGS_ATTRIBUTE_LENGTHS, "UDF_ARGS.attribute_lengths"); \
  _Static_assert(offsetof(ARGS, extension) == DJ_UDF_ARGS_EXTENSION, "UDF_ARGS.extension");               \
  _Static_assert(sizeof(INIT) == DJ_UDF_INIT_SIZE, "UDF_INIT size");                                      \
  _Static_assert(offsetof(INIT, maybe_null) == DJ_UDF_INIT_MAYBE_NULL, "UDF_INIT.maybe_null");            \
  _Static_assert(offsetof(INIT, decimals) == DJ_UDF_INIT_DECIMALS, "UDF_INIT.decimals");                  \
  _Static_assert(offsetof(INIT, max_length) == DJ_UDF_INIT_MAX_LENGTH, "UDF_INIT.max_length");            \
  _Static_assert(offsetof(INIT, ptr) == DJ_UDF_INIT_PTR, "UDF_INIT.ptr");                                 \
  _Static_assert(offsetof(INIT, const_item) == DJ_UDF_INIT_CONST_ITEM, "UDF_INIT.const_item");            \
  _Static_assert(offsetof(INIT, extension) == DJ_UDF_INIT_EXTENSION, "UDF_INIT.extension")
