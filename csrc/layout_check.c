/* Compile-time check that the UDF structures the Rust side declares match the
 * server headers this library is built against. Compiling is the test. */
#include <stddef.h>
#include <mysql.h>

#define CHECK(cond) _Static_assert(cond, #cond)

CHECK(sizeof(UDF_ARGS) == 64);
CHECK(offsetof(UDF_ARGS, arg_count) == 0);
CHECK(offsetof(UDF_ARGS, arg_type) == 8);
CHECK(offsetof(UDF_ARGS, args) == 16);
CHECK(offsetof(UDF_ARGS, lengths) == 24);
CHECK(offsetof(UDF_ARGS, maybe_null) == 32);
CHECK(offsetof(UDF_ARGS, attributes) == 40);
CHECK(offsetof(UDF_ARGS, attribute_lengths) == 48);
CHECK(offsetof(UDF_ARGS, extension) == 56);

CHECK(sizeof(UDF_INIT) == 40);
CHECK(offsetof(UDF_INIT, maybe_null) == 0);
CHECK(offsetof(UDF_INIT, decimals) == 4);
CHECK(offsetof(UDF_INIT, max_length) == 8);
CHECK(offsetof(UDF_INIT, ptr) == 16);
CHECK(offsetof(UDF_INIT, const_item) == 24);
CHECK(offsetof(UDF_INIT, extension) == 32);

CHECK(STRING_RESULT == 0 && REAL_RESULT == 1 && INT_RESULT == 2 && DECIMAL_RESULT == 4);

int dj_udf_layout_checked(void) { return 1; }
