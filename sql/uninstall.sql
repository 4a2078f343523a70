-- Removes the functions and routines. Keeps the dj_udf database when its
-- purge queue still lists objects to remove, so no pending deletion is lost;
-- drop it by hand (DROP DATABASE dj_udf) once the queue is empty or unwanted.
-- Stores, tracking tables and user data are never touched.
DROP FUNCTION IF EXISTS dj_checksum;
DROP FUNCTION IF EXISTS dj_file_checksum;
DROP FUNCTION IF EXISTS dj_blob_put;
DROP FUNCTION IF EXISTS dj_blob_get;
DROP FUNCTION IF EXISTS dj_attach_put;
DROP FUNCTION IF EXISTS dj_attach_put_file;
DROP FUNCTION IF EXISTS dj_attachment_name;
DROP FUNCTION IF EXISTS dj_attach_get;
DROP FUNCTION IF EXISTS dj_attach_export;
DROP FUNCTION IF EXISTS dj_filepath_info;
DROP FUNCTION IF EXISTS dj_filepath_put;
DROP FUNCTION IF EXISTS dj_filepath_get;
DROP FUNCTION IF EXISTS dj_verify;
DROP FUNCTION IF EXISTS dj_object_size;
DROP FUNCTION IF EXISTS dj_delete_object;
DROP FUNCTION IF EXISTS dj_list_objects;
DROP FUNCTION IF EXISTS dj_tracking_table;
DROP FUNCTION IF EXISTS dj_last_error;
DROP FUNCTION IF EXISTS dj_stores;
DROP FUNCTION IF EXISTS dj_version;

DROP PROCEDURE IF EXISTS dj_udf.fail;
DROP FUNCTION IF EXISTS dj_udf.tracking_table;
DROP FUNCTION IF EXISTS dj_udf.bytes_literal;
DROP FUNCTION IF EXISTS dj_udf.text_literal;
DROP PROCEDURE IF EXISTS dj_udf.run_sql;
DROP PROCEDURE IF EXISTS dj_udf.lookup;
DROP PROCEDURE IF EXISTS dj_udf.create_tracking_table;
DROP PROCEDURE IF EXISTS dj_udf.track;
DROP PROCEDURE IF EXISTS dj_udf.blob_put;
DROP PROCEDURE IF EXISTS dj_udf.attach_put;
DROP PROCEDURE IF EXISTS dj_udf.attach_put_file;
DROP PROCEDURE IF EXISTS dj_udf.filepath_put;
DROP FUNCTION IF EXISTS dj_udf.blob_get;
DROP FUNCTION IF EXISTS dj_udf.attach_get;
DROP FUNCTION IF EXISTS dj_udf.attach_export;
DROP FUNCTION IF EXISTS dj_udf.filepath_get;
DROP PROCEDURE IF EXISTS dj_udf.verify;
DROP PROCEDURE IF EXISTS dj_udf.delete_unused;
DROP PROCEDURE IF EXISTS dj_udf.purge_key_for;
DROP PROCEDURE IF EXISTS dj_udf.delete_if_untracked;
DROP PROCEDURE IF EXISTS dj_udf.purge;
DROP PROCEDURE IF EXISTS dj_udf.sweep;
DROP PROCEDURE IF EXISTS dj_udf.cleanup;
