-- Installs the DataJoint storage functions and the dj_udf routines.
-- Run as an account with INSERT on mysql.func and CREATE ROUTINE, e.g.
--   mariadb -u root < sql/install.sql
-- Safe to run again: it replaces what it created, and keeps the purge queue.
-- The library file dj_udf.so must already be in the server's plugin_dir.

-- Routines keep the client character set they were created with.
SET NAMES utf8mb4;

-- ---------------------------------------------------------------------------
-- Loadable functions (global to the server, callable by every account).
-- ---------------------------------------------------------------------------
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

CREATE FUNCTION dj_checksum RETURNS STRING SONAME 'dj_udf.so';
CREATE FUNCTION dj_file_checksum RETURNS STRING SONAME 'dj_udf.so';
CREATE FUNCTION dj_blob_put RETURNS STRING SONAME 'dj_udf.so';
CREATE FUNCTION dj_blob_get RETURNS STRING SONAME 'dj_udf.so';
CREATE FUNCTION dj_attach_put RETURNS STRING SONAME 'dj_udf.so';
CREATE FUNCTION dj_attach_put_file RETURNS STRING SONAME 'dj_udf.so';
CREATE FUNCTION dj_attachment_name RETURNS STRING SONAME 'dj_udf.so';
CREATE FUNCTION dj_attach_get RETURNS STRING SONAME 'dj_udf.so';
CREATE FUNCTION dj_attach_export RETURNS STRING SONAME 'dj_udf.so';
CREATE FUNCTION dj_filepath_info RETURNS STRING SONAME 'dj_udf.so';
CREATE FUNCTION dj_filepath_put RETURNS STRING SONAME 'dj_udf.so';
CREATE FUNCTION dj_filepath_get RETURNS STRING SONAME 'dj_udf.so';
CREATE FUNCTION dj_verify RETURNS STRING SONAME 'dj_udf.so';
CREATE FUNCTION dj_object_size RETURNS INTEGER SONAME 'dj_udf.so';
CREATE FUNCTION dj_delete_object RETURNS STRING SONAME 'dj_udf.so';
CREATE FUNCTION dj_list_objects RETURNS STRING SONAME 'dj_udf.so';
CREATE FUNCTION dj_tracking_table RETURNS STRING SONAME 'dj_udf.so';
CREATE FUNCTION dj_last_error RETURNS STRING SONAME 'dj_udf.so';
CREATE FUNCTION dj_stores RETURNS STRING SONAME 'dj_udf.so';
CREATE FUNCTION dj_version RETURNS STRING SONAME 'dj_udf.so';

-- ---------------------------------------------------------------------------
-- The dj_udf database: routines that turn UDF results into tracking rows and
-- SQL errors, and the queue that makes object deletion follow a commit.
-- ---------------------------------------------------------------------------
CREATE DATABASE IF NOT EXISTS dj_udf CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;

-- Objects whose tracking rows were deleted by dj_udf.delete_unused, in the
-- same transaction as the deletion: an object is only ever removed from its
-- store after its row's deletion committed, and never while a row for it
-- exists again.
CREATE TABLE IF NOT EXISTS dj_udf.purge_queue (
  id bigint unsigned NOT NULL AUTO_INCREMENT,
  schema_name varchar(64) NOT NULL,
  store varchar(64) NOT NULL,
  hash binary(16) NOT NULL,
  size bigint unsigned NOT NULL,
  attachment_name varchar(255) DEFAULT NULL,
  filepath varchar(1000) DEFAULT NULL,
  contents_hash binary(16) DEFAULT NULL,
  queued_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
  last_error varchar(1000) DEFAULT NULL,
  PRIMARY KEY (id),
  KEY by_target (schema_name, store, id)
) ENGINE=InnoDB COMMENT "objects whose tracking rows are deleted and await removal";

-- The purge key (the config file's purge_key). Granting SELECT on this table
-- is what allows an account to delete objects.
CREATE TABLE IF NOT EXISTS dj_udf.purge_key (
  purge_key varchar(255) NOT NULL,
  PRIMARY KEY (purge_key)
) ENGINE=InnoDB COMMENT "secret that authorizes dj_delete_object";

DELIMITER $$

-- Raises the last UDF failure as a SQL error, prefixed with what failed.
DROP PROCEDURE IF EXISTS dj_udf.fail $$
CREATE PROCEDURE dj_udf.fail(IN what varchar(200))
  SQL SECURITY INVOKER NO SQL
BEGIN
  DECLARE msg varchar(512) CHARACTER SET utf8mb4
    DEFAULT LEFT(CONCAT(what, ': ', COALESCE(CONVERT(dj_last_error() USING utf8mb4), 'failed without a message')), 512);
  SIGNAL SQLSTATE 'HY000' SET MESSAGE_TEXT = msg;
END $$

-- `<schema>`.`~external_<store>`, quoted for dynamic SQL. The library checks
-- both names (the checks every dj_* function applies), so no name that could
-- leave the identifier ever reaches a statement. Every routine that takes a
-- schema and a store declares it first, so both names are checked before
-- anything is written.
DROP FUNCTION IF EXISTS dj_udf.tracking_table $$
CREATE FUNCTION dj_udf.tracking_table(schema_name varchar(64), store varchar(64)) RETURNS varchar(200) CHARACTER SET utf8mb4
  NOT DETERMINISTIC NO SQL SQL SECURITY INVOKER
BEGIN
  DECLARE t varchar(200) CHARACTER SET utf8mb4 DEFAULT CONVERT(dj_tracking_table(store, schema_name) USING utf8mb4);
  IF t IS NULL THEN CALL dj_udf.fail('dj_udf.tracking_table'); END IF;
  RETURN t;
END $$

-- SQL literals for values spliced into dynamic SQL: hexadecimal, so that no
-- quote, backslash or sql_mode can change what they mean.
DROP FUNCTION IF EXISTS dj_udf.bytes_literal $$
CREATE FUNCTION dj_udf.bytes_literal(v longblob) RETURNS longtext CHARACTER SET ascii
  DETERMINISTIC NO SQL SQL SECURITY INVOKER
  RETURN IF(v IS NULL, 'NULL', CONCAT('X''', HEX(v), '''')) $$

DROP FUNCTION IF EXISTS dj_udf.text_literal $$
CREATE FUNCTION dj_udf.text_literal(v longtext CHARACTER SET utf8mb4) RETURNS longtext CHARACTER SET ascii
  DETERMINISTIC NO SQL SQL SECURITY INVOKER
  RETURN IF(v IS NULL, 'NULL', CONCAT('_utf8mb4 X''', HEX(v), '''')) $$

-- The one place dynamic SQL runs: prepare, execute, deallocate.
DROP PROCEDURE IF EXISTS dj_udf.run_sql $$
CREATE PROCEDURE dj_udf.run_sql(IN stmt longtext CHARACTER SET utf8mb4)
  SQL SECURITY INVOKER MODIFIES SQL DATA
BEGIN
  SET @dj_udf_sql = stmt;
  PREPARE dj_udf_stmt FROM @dj_udf_sql;
  EXECUTE dj_udf_stmt;
  DEALLOCATE PREPARE dj_udf_stmt;
  SET @dj_udf_sql = NULL;
END $$

-- Whether a tracking row names hash h, and its contents_hash. With
-- for_update, the row (or the gap where it would be) stays locked until
-- the caller's transaction ends, which holds off an insert of it.
DROP PROCEDURE IF EXISTS dj_udf.lookup $$
CREATE PROCEDURE dj_udf.lookup(IN schema_name varchar(64), IN store varchar(64), IN h binary(16), IN for_update boolean,
                               OUT tracked boolean, OUT contents_hash binary(16))
  SQL SECURITY INVOKER READS SQL DATA
BEGIN
  CALL dj_udf.run_sql(CONCAT('SELECT COUNT(*) > 0, MAX(contents_hash) INTO @dj_udf_n, @dj_udf_ch FROM ',
                             dj_udf.tracking_table(schema_name, store), ' WHERE hash = ', dj_udf.bytes_literal(h),
                             IF(for_update, ' FOR UPDATE', '')));
  SET tracked = @dj_udf_n, contents_hash = @dj_udf_ch, @dj_udf_n = NULL, @dj_udf_ch = NULL;
END $$

-- Creates `<schema>`.`~external_<store>` exactly as DataJoint 0.14 does.
DROP PROCEDURE IF EXISTS dj_udf.create_tracking_table $$
CREATE PROCEDURE dj_udf.create_tracking_table(IN schema_name varchar(64), IN store varchar(64))
  SQL SECURITY INVOKER MODIFIES SQL DATA
BEGIN
  DECLARE t varchar(200) CHARACTER SET utf8mb4 DEFAULT dj_udf.tracking_table(schema_name, store);
  DECLARE msg varchar(512);
  IF NOT JSON_CONTAINS_PATH(dj_stores(), 'one', CONCAT('$.stores."', store, '"')) THEN
    SET msg = LEFT(CONCAT('store ''', store, ''' is not configured: ', COALESCE(dj_last_error(), JSON_EXTRACT(dj_stores(), '$.config_file'))), 512);
    SIGNAL SQLSTATE 'HY000' SET MESSAGE_TEXT = msg;
  END IF;
  CALL dj_udf.run_sql(CONCAT('CREATE TABLE IF NOT EXISTS ', t, ' (',
    '`hash` binary(16) NOT NULL COMMENT ":uuid:hash of contents (blob), of filename + contents (attach), or relative filepath (filepath)",',
    '`size` bigint unsigned NOT NULL COMMENT "size of object in bytes",',
    '`attachment_name` varchar(255) DEFAULT NULL COMMENT "the filename of an attachment",',
    '`filepath` varchar(1000) DEFAULT NULL COMMENT "relative filepath or attachment filename",',
    '`contents_hash` binary(16) DEFAULT NULL COMMENT ":uuid:used for the filepath datatype",',
    '`timestamp` timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP COMMENT "automatic timestamp",',
    'PRIMARY KEY (`hash`)',
    ') ENGINE=InnoDB, COMMENT "external storage tracking"'));
END $$

-- Inserts or refreshes a tracking row the way DataJoint does, then tells
-- whether the object is missing. Objects are written before their row, so a
-- purge that ran between the write and this insert may have removed the
-- object; with the row in place no later purge can, so a caller told
-- object_gone writes the object again.
DROP PROCEDURE IF EXISTS dj_udf.track $$
CREATE PROCEDURE dj_udf.track(IN schema_name varchar(64), IN store varchar(64), IN h binary(16), IN sz bigint unsigned,
                              IN attachment_name varchar(255), IN filepath varchar(1000), IN contents_hash binary(16),
                              OUT object_gone boolean)
  SQL SECURITY INVOKER MODIFIES SQL DATA
BEGIN
  CALL dj_udf.run_sql(CONCAT('INSERT INTO ', dj_udf.tracking_table(schema_name, store),
    ' (hash, size, attachment_name, filepath, contents_hash) VALUES (', dj_udf.bytes_literal(h), ', ', sz, ', ',
    dj_udf.text_literal(attachment_name), ', ', dj_udf.text_literal(filepath), ', ', dj_udf.bytes_literal(contents_hash),
    ') ON DUPLICATE KEY UPDATE timestamp = CURRENT_TIMESTAMP'));
  SET object_gone = dj_object_size(store, schema_name, h, attachment_name, filepath) IS NULL;
END $$

-- blob@store: stores serialized blob bytes, tracks them, returns the hash.
DROP PROCEDURE IF EXISTS dj_udf.blob_put $$
CREATE PROCEDURE dj_udf.blob_put(IN store varchar(64), IN schema_name varchar(64), IN data longblob, OUT hash binary(16))
  SQL SECURITY INVOKER MODIFIES SQL DATA
BEGIN
  DECLARE t varchar(200) CHARACTER SET utf8mb4 DEFAULT dj_udf.tracking_table(schema_name, store);
  DECLARE h binary(16);
  DECLARE gone boolean;
  IF data IS NULL THEN
    SET hash = NULL;
  ELSE
    SET h = dj_blob_put(store, schema_name, data);
    IF h IS NULL THEN CALL dj_udf.fail('dj_udf.blob_put'); END IF;
    CALL dj_udf.track(schema_name, store, h, LENGTH(data), NULL, NULL, NULL, gone);
    IF gone AND dj_blob_put(store, schema_name, data) IS NULL THEN CALL dj_udf.fail('dj_udf.blob_put'); END IF;
    SET hash = h;
  END IF;
END $$

-- attach@store from bytes sent by the client.
DROP PROCEDURE IF EXISTS dj_udf.attach_put $$
CREATE PROCEDURE dj_udf.attach_put(IN store varchar(64), IN schema_name varchar(64), IN attachment_name varchar(255),
                                   IN data longblob, OUT hash binary(16))
  SQL SECURITY INVOKER MODIFIES SQL DATA
BEGIN
  DECLARE t varchar(200) CHARACTER SET utf8mb4 DEFAULT dj_udf.tracking_table(schema_name, store);
  DECLARE h binary(16);
  DECLARE gone boolean;
  IF data IS NULL THEN
    SET hash = NULL;
  ELSE
    SET h = dj_attach_put(store, schema_name, attachment_name, data);
    IF h IS NULL THEN CALL dj_udf.fail('dj_udf.attach_put'); END IF;
    CALL dj_udf.track(schema_name, store, h, LENGTH(data), attachment_name, NULL, NULL, gone);
    IF gone AND dj_attach_put(store, schema_name, attachment_name, data) IS NULL THEN CALL dj_udf.fail('dj_udf.attach_put'); END IF;
    SET hash = h;
  END IF;
END $$

-- attach@store from a file on the database server (inside a configured
-- folder), under the name the library gives it: the file's base name.
DROP PROCEDURE IF EXISTS dj_udf.attach_put_file $$
CREATE PROCEDURE dj_udf.attach_put_file(IN store varchar(64), IN schema_name varchar(64), IN server_path varchar(4096),
                                        OUT hash binary(16))
  SQL SECURITY INVOKER MODIFIES SQL DATA
BEGIN
  DECLARE t varchar(200) CHARACTER SET utf8mb4 DEFAULT dj_udf.tracking_table(schema_name, store);
  DECLARE h binary(16);
  DECLARE name varchar(255) CHARACTER SET utf8mb4;
  DECLARE sz bigint;
  DECLARE gone boolean;
  SET name = CONVERT(dj_attachment_name(server_path) USING utf8mb4);
  IF name IS NULL THEN CALL dj_udf.fail('dj_udf.attach_put_file'); END IF;
  SET h = dj_attach_put_file(store, schema_name, server_path);
  IF h IS NULL THEN CALL dj_udf.fail('dj_udf.attach_put_file'); END IF;
  SET sz = dj_object_size(store, schema_name, h, name, NULL);
  IF sz IS NULL THEN CALL dj_udf.fail('dj_udf.attach_put_file'); END IF;
  CALL dj_udf.track(schema_name, store, h, sz, name, NULL, NULL, gone);
  IF gone AND dj_attach_put_file(store, schema_name, server_path) IS NULL THEN CALL dj_udf.fail('dj_udf.attach_put_file'); END IF;
  SET hash = h;
END $$

-- filepath@store: a file below the store's stage, uploaded once; a different
-- version under the same relative path is refused, as DataJoint refuses it.
DROP PROCEDURE IF EXISTS dj_udf.filepath_put $$
CREATE PROCEDURE dj_udf.filepath_put(IN store varchar(64), IN schema_name varchar(64), IN server_path varchar(4096),
                                     OUT hash binary(16))
  SQL SECURITY INVOKER MODIFIES SQL DATA
BEGIN
  DECLARE t varchar(200) CHARACTER SET utf8mb4 DEFAULT dj_udf.tracking_table(schema_name, store);
  DECLARE info text CHARACTER SET utf8mb4;
  DECLARE h, ch, tracked_ch binary(16);
  DECLARE rel varchar(1000) CHARACTER SET utf8mb4;
  DECLARE sz bigint unsigned;
  DECLARE tracked, gone boolean;
  DECLARE msg varchar(512);
  SET info = CONVERT(dj_filepath_info(store, server_path) USING utf8mb4);
  IF info IS NULL THEN CALL dj_udf.fail('dj_udf.filepath_put'); END IF;
  SET h = UNHEX(JSON_UNQUOTE(JSON_EXTRACT(info, '$.hash')));
  SET rel = JSON_UNQUOTE(JSON_EXTRACT(info, '$.filepath'));
  SET sz = JSON_EXTRACT(info, '$.size');
  SET ch = IF(JSON_TYPE(JSON_EXTRACT(info, '$.contents_hash')) = 'NULL', NULL,
              UNHEX(JSON_UNQUOTE(JSON_EXTRACT(info, '$.contents_hash'))));
  CALL dj_udf.lookup(schema_name, store, h, FALSE, tracked, tracked_ch);
  IF tracked THEN
    -- Like DataJoint, a file above filepath_checksum_size_limit_insert (no
    -- contents_hash) is not compared with the row already there.
    IF ch IS NOT NULL AND NOT (tracked_ch <=> ch) THEN
      SET msg = LEFT(CONCAT('A different version of ''', rel, ''' has already been placed.'), 512);
      SIGNAL SQLSTATE 'HY000' SET MESSAGE_TEXT = msg;
    END IF;
  ELSE
    IF dj_filepath_put(store, server_path, ch) IS NULL THEN CALL dj_udf.fail('dj_udf.filepath_put'); END IF;
    CALL dj_udf.track(schema_name, store, h, sz, NULL, rel, ch, gone);
    IF gone AND dj_filepath_put(store, server_path, ch) IS NULL THEN CALL dj_udf.fail('dj_udf.filepath_put'); END IF;
  END IF;
  SET hash = h;
END $$

-- Verified reads for SELECT lists: a failure is a SQL error, never a NULL.
DROP FUNCTION IF EXISTS dj_udf.blob_get $$
CREATE FUNCTION dj_udf.blob_get(store varchar(64), schema_name varchar(64), hash binary(16)) RETURNS longblob
  NOT DETERMINISTIC NO SQL SQL SECURITY INVOKER
BEGIN
  DECLARE r longblob;
  IF hash IS NULL THEN RETURN NULL; END IF;
  SET r = dj_blob_get(store, schema_name, hash);
  IF r IS NULL THEN CALL dj_udf.fail('dj_udf.blob_get'); END IF;
  RETURN r;
END $$

DROP FUNCTION IF EXISTS dj_udf.attach_get $$
CREATE FUNCTION dj_udf.attach_get(store varchar(64), schema_name varchar(64), hash binary(16), attachment_name varchar(255))
  RETURNS longblob
  NOT DETERMINISTIC NO SQL SQL SECURITY INVOKER
BEGIN
  DECLARE r longblob;
  IF hash IS NULL THEN RETURN NULL; END IF;
  SET r = dj_attach_get(store, schema_name, hash, attachment_name);
  IF r IS NULL THEN CALL dj_udf.fail('dj_udf.attach_get'); END IF;
  RETURN r;
END $$

DROP FUNCTION IF EXISTS dj_udf.attach_export $$
CREATE FUNCTION dj_udf.attach_export(store varchar(64), schema_name varchar(64), hash binary(16),
                                     attachment_name varchar(255), server_dir varchar(4096))
  RETURNS varchar(4096) CHARACTER SET utf8mb4
  NOT DETERMINISTIC NO SQL SQL SECURITY INVOKER
BEGIN
  DECLARE r varchar(4096) CHARACTER SET utf8mb4;
  IF hash IS NULL THEN RETURN NULL; END IF;
  SET r = CONVERT(dj_attach_export(store, schema_name, hash, attachment_name, server_dir) USING utf8mb4);
  IF r IS NULL THEN CALL dj_udf.fail('dj_udf.attach_export'); END IF;
  RETURN r;
END $$

DROP FUNCTION IF EXISTS dj_udf.filepath_get $$
CREATE FUNCTION dj_udf.filepath_get(store varchar(64), filepath varchar(1000), contents_hash binary(16), size bigint unsigned)
  RETURNS varchar(4096) CHARACTER SET utf8mb4
  NOT DETERMINISTIC NO SQL SQL SECURITY INVOKER
BEGIN
  DECLARE r varchar(4096) CHARACTER SET utf8mb4;
  IF filepath IS NULL THEN RETURN NULL; END IF;
  SET r = CONVERT(dj_filepath_get(store, filepath, contents_hash, size) USING utf8mb4);
  IF r IS NULL THEN CALL dj_udf.fail('dj_udf.filepath_get'); END IF;
  RETURN r;
END $$

-- One result row per tracking row, with dj_verify's status.
DROP PROCEDURE IF EXISTS dj_udf.verify $$
CREATE PROCEDURE dj_udf.verify(IN schema_name varchar(64), IN store varchar(64))
  SQL SECURITY INVOKER READS SQL DATA
BEGIN
  CALL dj_udf.run_sql(CONCAT('SELECT HEX(hash) AS hash, size, attachment_name, filepath, ',
    'CONVERT(dj_verify(', dj_udf.text_literal(store), ', ', dj_udf.text_literal(schema_name),
    ', hash, size, attachment_name, filepath, contents_hash) USING utf8mb4) AS status ',
    'FROM ', dj_udf.tracking_table(schema_name, store), ' ORDER BY hash'));
END $$

-- Deletes the tracking rows that no column references, queueing their
-- objects for dj_udf.purge in the same transaction. NULL-safe: NOT EXISTS
-- ignores NULLs in referencing columns (DataJoint issue #1000 used NOT IN).
-- Commits: it must not run inside a caller's transaction.
DROP PROCEDURE IF EXISTS dj_udf.delete_unused $$
CREATE PROCEDURE dj_udf.delete_unused(IN schema_name varchar(64), IN store varchar(64), OUT rows_deleted bigint)
  SQL SECURITY INVOKER MODIFIES SQL DATA
BEGIN
  DECLARE t varchar(200) CHARACTER SET utf8mb4 DEFAULT dj_udf.tracking_table(schema_name, store);
  DECLARE pred text;
  DECLARE before_id bigint unsigned;
  DECLARE EXIT HANDLER FOR SQLEXCEPTION
  BEGIN
    ROLLBACK;
    RESIGNAL;
  END;
  SET SESSION group_concat_max_len = 1048576;
  SELECT GROUP_CONCAT(CONCAT('NOT EXISTS (SELECT 1 FROM `', REPLACE(TABLE_SCHEMA, '`', '``'), '`.`',
                             REPLACE(TABLE_NAME, '`', '``'), '` r WHERE r.`', REPLACE(COLUMN_NAME, '`', '``'),
                             '` = e.hash)') SEPARATOR ' AND ')
    INTO pred
    FROM information_schema.KEY_COLUMN_USAGE
   WHERE REFERENCED_TABLE_SCHEMA = schema_name
     AND REFERENCED_TABLE_NAME = CONCAT('~external_', store)
     AND REFERENCED_COLUMN_NAME = 'hash';
  SET pred = COALESCE(pred, 'TRUE');
  START TRANSACTION;
  SELECT COALESCE(MAX(id), 0) INTO before_id FROM dj_udf.purge_queue;
  CALL dj_udf.run_sql(CONCAT(
    'INSERT INTO dj_udf.purge_queue (schema_name, store, hash, size, attachment_name, filepath, contents_hash) ',
    'SELECT ', dj_udf.text_literal(schema_name), ', ', dj_udf.text_literal(store),
    ', e.hash, e.size, e.attachment_name, e.filepath, e.contents_hash FROM ', t, ' e WHERE ', pred, ' FOR UPDATE'));
  CALL dj_udf.run_sql(CONCAT('DELETE e FROM ', t, ' e JOIN dj_udf.purge_queue q ON q.hash = e.hash AND q.id > ', before_id,
    ' AND q.schema_name = ', dj_udf.text_literal(schema_name), ' AND q.store = ', dj_udf.text_literal(store)));
  SET rows_deleted = ROW_COUNT();
  COMMIT;
END $$

-- The purge key, for the routines that delete objects; reading it needs
-- SELECT on dj_udf.purge_key, which is the privilege to delete.
DROP PROCEDURE IF EXISTS dj_udf.purge_key_for $$
CREATE PROCEDURE dj_udf.purge_key_for(IN what varchar(64), OUT k varchar(255))
  SQL SECURITY INVOKER READS SQL DATA
BEGIN
  DECLARE msg varchar(512);
  SELECT MIN(purge_key) INTO k FROM dj_udf.purge_key;
  IF k IS NULL THEN
    SET msg = CONCAT(what, ': dj_udf.purge_key is empty; insert the purge_key of the config file');
    SIGNAL SQLSTATE 'HY000' SET MESSAGE_TEXT = msg;
  END IF;
END $$

-- The one place objects are deleted: inside the caller's transaction, it
-- locks the object's tracking-row slot (dj_udf.lookup FOR UPDATE) and
-- deletes the object only if no row names it. status: 'tracked',
-- 'deleted', 'missing', or NULL with dj_last_error() on failure.
DROP PROCEDURE IF EXISTS dj_udf.delete_if_untracked $$
CREATE PROCEDURE dj_udf.delete_if_untracked(IN schema_name varchar(64), IN store varchar(64), IN h binary(16),
                                            IN attachment_name varchar(255), IN filepath varchar(1000),
                                            IN k varchar(255), OUT status varchar(100))
  SQL SECURITY INVOKER MODIFIES SQL DATA
BEGIN
  DECLARE tracked boolean;
  DECLARE ch binary(16);
  CALL dj_udf.lookup(schema_name, store, h, TRUE, tracked, ch);
  IF tracked THEN
    SET status = 'tracked';
  ELSE
    SET status = dj_delete_object(store, schema_name, h, attachment_name, filepath, k);
  END IF;
END $$

-- Removes the queued objects of one schema and store. Each object is removed
-- while its tracking-row slot is locked, and only if no row for it exists
-- again; a failure leaves the entry queued with its error for a later run.
DROP PROCEDURE IF EXISTS dj_udf.purge $$
CREATE PROCEDURE dj_udf.purge(IN schema_name varchar(64), IN store varchar(64), OUT objects_deleted bigint, OUT failures bigint)
  SQL SECURITY INVOKER MODIFIES SQL DATA
BEGIN
  DECLARE k varchar(255);
  DECLARE last_id, qid bigint unsigned DEFAULT 0;
  DECLARE h binary(16);
  DECLARE nm varchar(255);
  DECLARE fp varchar(1000);
  DECLARE status varchar(100);
  DECLARE EXIT HANDLER FOR SQLEXCEPTION
  BEGIN
  DECLARE t varchar(200) CHARACTER SET utf8mb4 DEFAULT dj_udf.tracking_table(schema_name, store);
    ROLLBACK;
    RESIGNAL;
  END;
  CALL dj_udf.purge_key_for('dj_udf.purge', k);
  SET objects_deleted = 0, failures = 0;
  purge_loop: LOOP
    SELECT MIN(id) INTO qid FROM dj_udf.purge_queue q
     WHERE q.schema_name = schema_name AND q.store = store AND q.id > last_id;
    IF qid IS NULL THEN LEAVE purge_loop; END IF;
    SELECT hash, attachment_name, filepath INTO h, nm, fp FROM dj_udf.purge_queue WHERE id = qid;
    SET last_id = qid;
    START TRANSACTION;
    CALL dj_udf.delete_if_untracked(schema_name, store, h, nm, fp, k, status);
    IF status IS NULL THEN
      UPDATE dj_udf.purge_queue SET last_error = LEFT(CONVERT(dj_last_error() USING utf8mb4), 1000) WHERE id = qid;
      SET failures = failures + 1;
    ELSE
      -- deleted, already gone, or tracked again since it was queued (in use)
      DELETE FROM dj_udf.purge_queue WHERE id = qid;
      IF status = 'deleted' THEN SET objects_deleted = objects_deleted + 1; END IF;
    END IF;
    COMMIT;
  END LOOP;
END $$

-- Removes objects of one schema that no tracking row names and that are at
-- least min_age_seconds old: what a rolled-back or failed insert left behind
-- (objects are written before the transaction that tracks them commits).
-- Each object is removed while its tracking-row slot is locked, as in purge;
-- files that are not DataJoint objects of this store are never touched.
-- Filepath objects are not swept (their keys are not per schema).
DROP PROCEDURE IF EXISTS dj_udf.sweep $$
CREATE PROCEDURE dj_udf.sweep(IN schema_name varchar(64), IN store varchar(64), IN min_age_seconds bigint unsigned,
                              OUT orphans_deleted bigint)
  SQL SECURITY INVOKER MODIFIES SQL DATA
BEGIN
  DECLARE k varchar(255);
  DECLARE after_key varchar(4096) CHARACTER SET utf8mb4 DEFAULT '';
  DECLARE page longtext CHARACTER SET utf8mb4;
  DECLARE done int DEFAULT 0;
  DECLARE ik varchar(4096) CHARACTER SET utf8mb4;
  DECLARE ih char(32);
  DECLARE inm varchar(255) CHARACTER SET utf8mb4;
  DECLARE iage bigint unsigned;
  DECLARE status varchar(100);
  DECLARE items CURSOR FOR
    SELECT jt.k, jt.h, jt.nm, jt.age FROM JSON_TABLE(page, '$[*]' COLUMNS (
      k varchar(4096) CHARACTER SET utf8mb4 PATH '$.key',
      h char(32) PATH '$.hash',
      nm varchar(255) CHARACTER SET utf8mb4 PATH '$.attachment_name',
      age bigint unsigned PATH '$.age')) AS jt;
  DECLARE CONTINUE HANDLER FOR NOT FOUND SET done = 1;
  DECLARE EXIT HANDLER FOR SQLEXCEPTION
  BEGIN
  DECLARE t varchar(200) CHARACTER SET utf8mb4 DEFAULT dj_udf.tracking_table(schema_name, store);
    ROLLBACK;
    RESIGNAL;
  END;
  CALL dj_udf.purge_key_for('dj_udf.sweep', k);
  SET orphans_deleted = 0;
  sweep_loop: LOOP
    SET page = CONVERT(dj_list_objects(store, schema_name, after_key, 500) USING utf8mb4);
    IF page IS NULL THEN CALL dj_udf.fail('dj_udf.sweep'); END IF;
    IF JSON_LENGTH(page) = 0 THEN LEAVE sweep_loop; END IF;
    SET done = 0;
    OPEN items;
    item_loop: LOOP
      FETCH items INTO ik, ih, inm, iage;
      IF done THEN LEAVE item_loop; END IF;
      SET after_key = ik;
      IF ih IS NOT NULL AND iage >= min_age_seconds THEN
        START TRANSACTION;
        CALL dj_udf.delete_if_untracked(schema_name, store, UNHEX(ih), inm, NULL, k, status);
        IF status IS NULL THEN CALL dj_udf.fail('dj_udf.sweep'); END IF;
        IF status = 'deleted' THEN SET orphans_deleted = orphans_deleted + 1; END IF;
        COMMIT;
      END IF;
    END LOOP;
    CLOSE items;
  END LOOP;
END $$

-- Both steps: delete unused tracking rows, then remove their objects.
DROP PROCEDURE IF EXISTS dj_udf.cleanup $$
CREATE PROCEDURE dj_udf.cleanup(IN schema_name varchar(64), IN store varchar(64),
                                OUT rows_deleted bigint, OUT objects_deleted bigint, OUT failures bigint)
  SQL SECURITY INVOKER MODIFIES SQL DATA
BEGIN
  CALL dj_udf.delete_unused(schema_name, store, rows_deleted);
  CALL dj_udf.purge(schema_name, store, objects_deleted, failures);
END $$

DELIMITER ;

-- ---------------------------------------------------------------------------
-- Objects of any size from any client: chunked uploads and ranged reads
-- (README, "Objects of any size"). Routines of their own, after the rest.
-- ---------------------------------------------------------------------------
DROP FUNCTION IF EXISTS dj_upload_open;
DROP FUNCTION IF EXISTS dj_upload_part;
DROP FUNCTION IF EXISTS dj_upload_finish;
DROP FUNCTION IF EXISTS dj_upload_status;
DROP FUNCTION IF EXISTS dj_upload_abort;
DROP FUNCTION IF EXISTS dj_expire_uploads;
DROP FUNCTION IF EXISTS dj_read_range;

CREATE FUNCTION dj_upload_open RETURNS STRING SONAME 'dj_udf.so';
CREATE FUNCTION dj_upload_part RETURNS STRING SONAME 'dj_udf.so';
CREATE FUNCTION dj_upload_finish RETURNS STRING SONAME 'dj_udf.so';
CREATE FUNCTION dj_upload_status RETURNS STRING SONAME 'dj_udf.so';
CREATE FUNCTION dj_upload_abort RETURNS STRING SONAME 'dj_udf.so';
CREATE FUNCTION dj_expire_uploads RETURNS INTEGER SONAME 'dj_udf.so';
CREATE FUNCTION dj_read_range RETURNS STRING SONAME 'dj_udf.so';

DELIMITER $$

-- Opens a chunked upload of an attachment (attachment_name NULL: a blob)
-- into a store and schema whose tracking table exists. Every part has
-- part_size bytes but the last. The id belongs to the calling account.
DROP PROCEDURE IF EXISTS dj_udf.upload_open $$
CREATE PROCEDURE dj_udf.upload_open(IN store varchar(64), IN schema_name varchar(64), IN attachment_name varchar(255),
                                    IN part_size bigint unsigned, OUT upload_id varchar(64))
  SQL SECURITY INVOKER READS SQL DATA
BEGIN
  DECLARE t varchar(200) CHARACTER SET utf8mb4 DEFAULT dj_udf.tracking_table(schema_name, store);
  DECLARE id varchar(64);
  -- The finish writes a tracking row: a missing table fails now, not then.
  CALL dj_udf.run_sql(CONCAT('DO (SELECT COUNT(*) FROM ', t, ' WHERE FALSE)'));
  SET id = CONVERT(dj_upload_open(store, schema_name, attachment_name, part_size, CURRENT_USER()) USING ascii);
  IF id IS NULL THEN CALL dj_udf.fail('dj_udf.upload_open'); END IF;
  SET upload_id = id;
END $$

-- Stores part part_number (from 1) of an upload, in any order; sending a
-- part again is harmless. part_md5 is the MD5 (hex) of the bytes received.
DROP PROCEDURE IF EXISTS dj_udf.upload_part $$
CREATE PROCEDURE dj_udf.upload_part(IN upload_id varchar(64), IN part_number bigint unsigned, IN data longblob,
                                    OUT part_md5 varchar(32))
  SQL SECURITY INVOKER NO SQL
BEGIN
  DECLARE m varchar(32);
  SET m = CONVERT(dj_upload_part(upload_id, CURRENT_USER(), part_number, data) USING ascii);
  IF m IS NULL THEN CALL dj_udf.fail('dj_udf.upload_part'); END IF;
  SET part_md5 = m;
END $$

-- Finishes an upload of `parts` parts: the library checks that every part
-- is there (and, when not NULL, each part's MD5 against part_md5s and the
-- object's hash against expected_hash), puts the object under its
-- DataJoint key, and this writes its tracking row as DataJoint does. hash
-- is ready for the INSERT of the user row. Repeating a finish that
-- succeeded (a lost answer) gives the same hash.
DROP PROCEDURE IF EXISTS dj_udf.upload_finish $$
CREATE PROCEDURE dj_udf.upload_finish(IN upload_id varchar(64), IN parts bigint unsigned, IN part_md5s longtext,
                                      IN expected_hash varbinary(36), OUT hash binary(16))
  SQL SECURITY INVOKER MODIFIES SQL DATA
BEGIN
  DECLARE r text CHARACTER SET utf8mb4;
  DECLARE h binary(16);
  DECLARE nm varchar(255) CHARACTER SET utf8mb4;
  DECLARE gone boolean;
  DECLARE msg varchar(512);
  SET r = CONVERT(dj_upload_finish(upload_id, CURRENT_USER(), parts, part_md5s, expected_hash) USING utf8mb4);
  IF r IS NULL THEN CALL dj_udf.fail('dj_udf.upload_finish'); END IF;
  SET h = UNHEX(JSON_UNQUOTE(JSON_EXTRACT(r, '$.hash')));
  SET nm = IF(JSON_TYPE(JSON_EXTRACT(r, '$.attachment_name')) = 'NULL', NULL, JSON_UNQUOTE(JSON_EXTRACT(r, '$.attachment_name')));
  CALL dj_udf.track(JSON_UNQUOTE(JSON_EXTRACT(r, '$.schema')), JSON_UNQUOTE(JSON_EXTRACT(r, '$.store')), h,
                    JSON_EXTRACT(r, '$.size'), nm, NULL, NULL, gone);
  IF gone THEN
    SET msg = 'dj_udf.upload_finish: the object was removed (purge or sweep) before its tracking row was written; upload it again';
    SIGNAL SQLSTATE 'HY000' SET MESSAGE_TEXT = msg;
  END IF;
  SET hash = h;
END $$

-- JSON: the object an upload makes, its part size, each received part's
-- number, size and MD5, and seconds until it expires.
DROP FUNCTION IF EXISTS dj_udf.upload_status $$
CREATE FUNCTION dj_udf.upload_status(upload_id varchar(64)) RETURNS longtext CHARACTER SET utf8mb4
  NOT DETERMINISTIC NO SQL SQL SECURITY INVOKER
BEGIN
  DECLARE r longtext CHARACTER SET utf8mb4 DEFAULT CONVERT(dj_upload_status(upload_id, CURRENT_USER()) USING utf8mb4);
  IF r IS NULL THEN CALL dj_udf.fail('dj_udf.upload_status'); END IF;
  RETURN r;
END $$

-- Ends an unfinished upload of the calling account and frees what it holds.
DROP PROCEDURE IF EXISTS dj_udf.upload_abort $$
CREATE PROCEDURE dj_udf.upload_abort(IN upload_id varchar(64))
  SQL SECURITY INVOKER NO SQL
BEGIN
  IF dj_upload_abort(upload_id, CURRENT_USER()) IS NULL THEN CALL dj_udf.fail('dj_udf.upload_abort'); END IF;
END $$

-- Removes every upload, of any account, that no call touched for the
-- config's upload_expiry seconds, with its bytes in the upload folder or
-- its S3 multipart upload. Uploads only: objects are sweep's (see README).
DROP PROCEDURE IF EXISTS dj_udf.expire_uploads $$
CREATE PROCEDURE dj_udf.expire_uploads(OUT removed bigint)
  SQL SECURITY INVOKER NO SQL
BEGIN
  DECLARE n bigint DEFAULT dj_expire_uploads();
  IF n IS NULL THEN CALL dj_udf.fail('dj_udf.expire_uploads'); END IF;
  SET removed = n;
END $$

-- One result row (size, data): the object's size and its bytes
-- [start_at, start_at + byte_count) (fewer at its end), for the object a
-- tracking row of `schema_name` names by `hash`. The call that returns the
-- last byte fails instead if the whole object does not hash as the row says.
DROP PROCEDURE IF EXISTS dj_udf.read_range $$
CREATE PROCEDURE dj_udf.read_range(IN store varchar(64), IN schema_name varchar(64), IN hash varbinary(36),
                                   IN start_at bigint unsigned, IN byte_count bigint unsigned)
  SQL SECURITY INVOKER READS SQL DATA
BEGIN
  DECLARE t varchar(200) CHARACTER SET utf8mb4 DEFAULT dj_udf.tracking_table(schema_name, store);
  DECLARE h binary(16) DEFAULT IF(LENGTH(hash) = 16, hash, UNHEX(REPLACE(hash, '-', '')));
  DECLARE n, sz bigint unsigned;
  DECLARE nm varchar(255) CHARACTER SET utf8mb4;
  DECLARE fp varchar(1000) CHARACTER SET utf8mb4;
  DECLARE ch binary(16);
  DECLARE msg varchar(512);
  CALL dj_udf.run_sql(CONCAT('SELECT COUNT(*), MAX(size), MAX(attachment_name), MAX(filepath), MAX(contents_hash) ',
    'INTO @dj_udf_n, @dj_udf_sz, @dj_udf_nm, @dj_udf_fp, @dj_udf_ch FROM ', t, ' WHERE hash = ', dj_udf.bytes_literal(h)));
  SET n = @dj_udf_n, sz = @dj_udf_sz, nm = @dj_udf_nm, fp = @dj_udf_fp, ch = @dj_udf_ch;
  SET @dj_udf_n = NULL, @dj_udf_sz = NULL, @dj_udf_nm = NULL, @dj_udf_fp = NULL, @dj_udf_ch = NULL;
  IF n = 0 THEN
    SET msg = LEFT(CONCAT('dj_udf.read_range: ', t, ' has no row for hash ', COALESCE(HEX(h), 'NULL')), 512);
    SIGNAL SQLSTATE 'HY000' SET MESSAGE_TEXT = msg;
  END IF;
  SELECT sz AS size, dj_read_range(store, schema_name, h, sz, nm, fp, ch, start_at, byte_count) AS data;
  IF dj_last_error() IS NOT NULL THEN CALL dj_udf.fail('dj_udf.read_range'); END IF;
END $$

DELIMITER ;
