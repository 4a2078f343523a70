/* Compile-time check that Oracle MySQL 8.4's published UDF structures have
 * the layout of udf_layout.h. MySQL's headers cannot be installed here, so
 * the two structures are restated from their published definition:
 * include/mysql/udf_registration_types.h of MySQL 8.4 (member lists in the
 * MySQL 8.4.0 source documentation, dev.mysql.com/doc/dev/mysql-server/8.4.0/,
 * structUDF__ARGS and structUDF__INIT; unchanged since 8.0). Member types,
 * in order:
 *   UDF_ARGS: unsigned int arg_count; enum Item_result *arg_type; char **args;
 *             unsigned long *lengths; char *maybe_null; char **attributes;
 *             unsigned long *attribute_lengths; void *extension;
 *   UDF_INIT: bool maybe_null; unsigned int decimals; unsigned long max_length;
 *             char *ptr; bool const_item; void *extension;
 * and enum Item_result { INVALID_RESULT = -1, STRING_RESULT = 0, REAL_RESULT,
 * INT_RESULT, ROW_RESULT, DECIMAL_RESULT } (so arg_type is read as a C int:
 * MariaDB's has no -1 and one more value). Built always; compiling is the test. */
#include <stdbool.h>
#include <stddef.h>
#include "udf_layout.h"

#define CHECK(cond) _Static_assert(cond, #cond)

enum mysql84_item_result { M84_INVALID = -1, M84_STRING = 0, M84_REAL, M84_INT, M84_ROW, M84_DECIMAL };

struct mysql84_udf_args {
  unsigned int arg_count;
  enum mysql84_item_result *arg_type;
  char **args;
  unsigned long *lengths;
  char *maybe_null;
  char **attributes;
  unsigned long *attribute_lengths;
  void *extension;
};

struct mysql84_udf_init {
  bool maybe_null;
  unsigned int decimals;
  unsigned long max_length;
  char *ptr;
  bool const_item;
  void *extension;
};

DJ_CHECK_UDF_LAYOUT(struct mysql84_udf_args, struct mysql84_udf_init);

CHECK(sizeof(enum mysql84_item_result) == sizeof(int));
CHECK(M84_STRING == 0 && M84_REAL == 1 && M84_INT == 2 && M84_DECIMAL == 4);

int dj_udf_mysql84_layout_checked(void) { return 1; }
