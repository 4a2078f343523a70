/* Compile-time check that the UDF structures of the MariaDB (or MySQL)
 * server headers this library is built against have the layout of
 * udf_layout.h. Compiling is the test; build.rs runs it when the headers
 * are installed (libmariadbd-dev). */
#include <stddef.h>
#include <mysql.h>
#include "udf_layout.h"

#define CHECK(cond) _Static_assert(cond, #cond)

DJ_CHECK_UDF_LAYOUT(UDF_ARGS, UDF_INIT);

CHECK(STRING_RESULT == 0 && REAL_RESULT == 1 && INT_RESULT == 2 && DECIMAL_RESULT == 4);

int dj_udf_layout_checked(void) { return 1; }
