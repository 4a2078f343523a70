/* Compile-time check that the UDF structures of the MariaDB (or MySQL)
 * server headers this library is built against have the layout of
 * udf_layout.h. Compiling is the test; build.rs runs it when the headers
 * are installed (libmariadbd-dev). */
#include <stddef.h>
#include <mysql.h>
#include "udf_layout.h"

#define CHECK(cond) _Static_assert(cond, #cond)

CHECK(sizeof(UDF_ARGS) == DJ_UDF_ARGS_SIZE);
CHECK(offsetof(UDF_ARGS, arg_count) == DJ_UDF_ARGS_ARG_COUNT);
CHECK(offsetof(UDF_ARGS, arg_type) == DJ_UDF_ARGS_ARG_TYPE);
CHECK(offsetof(UDF_ARGS, args) == DJ_UDF_ARGS_ARGS);
CHECK(offsetof(UDF_ARGS, lengths) == DJ_UDF_ARGS_LENGTHS);
CHECK(offsetof(UDF_ARGS, maybe_null) == DJ_UDF_ARGS_MAYBE_NULL);
CHECK(offsetof(UDF_ARGS, attributes) == DJ_UDF_ARGS_ATTRIBUTES);
CHECK(offsetof(UDF_ARGS, attribute_lengths) == DJ_UDF_ARGS_ATTRIBUTE_LENGTHS);
CHECK(offsetof(UDF_ARGS, extension) == DJ_UDF_ARGS_EXTENSION);

CHECK(sizeof(UDF_INIT) == DJ_UDF_INIT_SIZE);
CHECK(offsetof(UDF_INIT, maybe_null) == DJ_UDF_INIT_MAYBE_NULL);
CHECK(offsetof(UDF_INIT, decimals) == DJ_UDF_INIT_DECIMALS);
CHECK(offsetof(UDF_INIT, max_length) == DJ_UDF_INIT_MAX_LENGTH);
CHECK(offsetof(UDF_INIT, ptr) == DJ_UDF_INIT_PTR);
CHECK(offsetof(UDF_INIT, const_item) == DJ_UDF_INIT_CONST_ITEM);
CHECK(offsetof(UDF_INIT, extension) == DJ_UDF_INIT_EXTENSION);

CHECK(STRING_RESULT == 0 && REAL_RESULT == 1 && INT_RESULT == 2 && DECIMAL_RESULT == 4);

int dj_udf_layout_checked(void) { return 1; }
