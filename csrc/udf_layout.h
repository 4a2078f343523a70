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
