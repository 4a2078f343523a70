-- Installs the DataJoint storage functions and the dj_udf routines.
--
--   mariadb -u root < sql/install.sql
--
-- Safe to run again: it replaces what it created, and keeps the purge queue,
-- the purge key and the settings. The library file named below (dj_udf.so)
-- must already be in the server's plugin_dir; to upgrade a running server,
-- see "Upgrade" in README.md (never copy over a loaded library).
--
-- An administrator other than root needs exactly these privileges (checked
-- by tests/test_install_and_upgrade.py):
--   GRANT INSERT, DELETE ON mysql.* TO admin;  -- CREATE / DROP FUNCTION ... SONAME
--   GRANT SELECT ON *.* TO admin;              -- the queue routines (below) read
--                                              -- every schema's tracking tables
--   GRANT CREATE, CREATE ROUTINE, ALTER ROUTINE, CREATE VIEW, DROP, SELECT, INSERT,
--     UPDATE, DELETE ON dj_udf.* TO admin;     -- CREATE VIEW, DROP: the monitoring views
-- INSERT on the mysql database lets an account rewrite the grant tables, so
-- whoever may install loadable functions is in effect as powerful as root.
-- With binary logging on (MySQL 8's default), creating the stored functions
-- below also needs SUPER, or log_bin_trust_function_creators=1 on the
-- server (MariaDB: ERROR 1419 otherwise). The account that runs this script
-- becomes the DEFINER of the queue routines and the monitoring views: keep
-- it, with the privileges above, for as long as they are installed.

-- The routines keep the sql_mode and client character set they were created
-- with, whatever the server's or the caller's: these, and no ANSI_QUOTES,
-- ORACLE or NO_BACKSLASH_ESCAPES, so that every statement below means the
-- same on every server.
SET SESSION sql_mode = 'STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION';
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
DROP FUNCTION IF EXISTS dj_sweep_leftovers;
DROP FUNCTION IF EXISTS dj_verify_many;
DROP FUNCTION IF EXISTS dj_attach_export_many;
DROP FUNCTION IF EXISTS dj_filepath_get_many;
DROP FUNCTION IF EXISTS dj_attach_put_files;
DROP FUNCTION IF EXISTS dj_attach_put_many;
DROP FUNCTION IF EXISTS dj_blob_put_many;
DROP FUNCTION IF EXISTS dj_object_sizes;
DROP FUNCTION IF EXISTS dj_delete_objects;
DROP FUNCTION IF EXISTS dj_tracking_table;
DROP FUNCTION IF EXISTS dj_last_error;
DROP FUNCTION IF EXISTS dj_stores;
DROP FUNCTION IF EXISTS dj_version;
-- chunked uploads and ranged reads
DROP FUNCTION IF EXISTS dj_upload_open;
DROP FUNCTION IF EXISTS dj_upload_part;
DROP FUNCTION IF EXISTS dj_upload_finish;
DROP FUNCTION IF EXISTS dj_upload_status;
DROP FUNCTION IF EXISTS dj_upload_abort;
DROP FUNCTION IF EXISTS dj_expire_uploads;
DROP FUNCTION IF EXISTS dj_read_range;
-- monitoring
DROP FUNCTION IF EXISTS dj_store_stats;
DROP FUNCTION IF EXISTS dj_reset_store_stats;
DROP FUNCTION IF EXISTS dj_transfers;
DROP FUNCTION IF EXISTS dj_store_health;

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
CREATE FUNCTION dj_sweep_leftovers RETURNS STRING SONAME 'dj_udf.so';
CREATE FUNCTION dj_verify_many RETURNS STRING SONAME 'dj_udf.so';
CREATE FUNCTION dj_attach_export_many RETURNS STRING SONAME 'dj_udf.so';
CREATE FUNCTION dj_filepath_get_many RETURNS STRING SONAME 'dj_udf.so';
CREATE FUNCTION dj_attach_put_files RETURNS STRING SONAME 'dj_udf.so';
CREATE FUNCTION dj_attach_put_many RETURNS STRING SONAME 'dj_udf.so';
CREATE FUNCTION dj_blob_put_many RETURNS STRING SONAME 'dj_udf.so';
CREATE FUNCTION dj_object_sizes RETURNS STRING SONAME 'dj_udf.so';
CREATE FUNCTION dj_delete_objects RETURNS STRING SONAME 'dj_udf.so';
CREATE FUNCTION dj_tracking_table RETURNS STRING SONAME 'dj_udf.so';
CREATE FUNCTION dj_last_error RETURNS STRING SONAME 'dj_udf.so';
CREATE FUNCTION dj_stores RETURNS STRING SONAME 'dj_udf.so';
CREATE FUNCTION dj_version RETURNS STRING SONAME 'dj_udf.so';
-- chunked uploads and ranged reads
CREATE FUNCTION dj_upload_open RETURNS STRING SONAME 'dj_udf.so';
CREATE FUNCTION dj_upload_part RETURNS STRING SONAME 'dj_udf.so';
CREATE FUNCTION dj_upload_finish RETURNS STRING SONAME 'dj_udf.so';
CREATE FUNCTION dj_upload_status RETURNS STRING SONAME 'dj_udf.so';
CREATE FUNCTION dj_upload_abort RETURNS STRING SONAME 'dj_udf.so';
CREATE FUNCTION dj_expire_uploads RETURNS INTEGER SONAME 'dj_udf.so';
CREATE FUNCTION dj_read_range RETURNS STRING SONAME 'dj_udf.so';
CREATE FUNCTION dj_store_stats RETURNS STRING SONAME 'dj_udf.so';
CREATE FUNCTION dj_reset_store_stats RETURNS INTEGER SONAME 'dj_udf.so';
CREATE FUNCTION dj_transfers RETURNS STRING SONAME 'dj_udf.so';
CREATE FUNCTION dj_store_health RETURNS STRING SONAME 'dj_udf.so';

-- ---------------------------------------------------------------------------
-- The dj_udf database: routines that turn UDF results into tracking rows and
-- SQL errors, and the queue that makes object deletion follow a commit.
-- ---------------------------------------------------------------------------
CREATE DATABASE IF NOT EXISTS dj_udf CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;

-- Objects whose tracking rows dj_udf.delete_unused deleted, queued in the
-- same transaction as the deletion: an object is only ever removed from its
-- store after its row's deletion committed, and never while a row for it
-- exists again. Written only through the queue routines below (no account
-- needs a privilege on this table).
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
) ENGINE=InnoDB COMMENT 'objects whose tracking rows are deleted and await removal';

-- The purge key (the config file's purge_key). Granting SELECT on this table
-- is what allows an account to delete objects.
CREATE TABLE IF NOT EXISTS dj_udf.purge_key (
  purge_key varchar(255) NOT NULL,
  PRIMARY KEY (purge_key)
) ENGINE=InnoDB COMMENT 'secret that authorizes dj_delete_object';

-- Settings an administrator may change with UPDATE:
--   cleanup_grace_seconds: dj_udf.delete_unused leaves tracking rows put
--   (or put again) less than this many seconds ago, so that a client has
--   that long between CALL dj_udf.attach_put (or any put) and the INSERT
--   that references the object.
--   removal_stale_seconds: a dj_udf.removals row older than this is taken
--   for one a server left when it died mid-removal (see that table).
CREATE TABLE IF NOT EXISTS dj_udf.settings (
  name varchar(64) NOT NULL,
  value varchar(255) NOT NULL,
  PRIMARY KEY (name)
) ENGINE=InnoDB COMMENT 'settings of the dj_udf routines';
INSERT IGNORE INTO dj_udf.settings VALUES ('cleanup_grace_seconds', '3600');

-- Objects being removed from their stores right now, by which server and
-- connection. A purge or sweep commits its row here before it deletes the
-- object and removes it after, so that every node of a cluster sees it:
-- a put on another server refuses to track such an object (dj_udf.track
-- signals a deadlock, 1213, to be retried) instead of committing a row
-- whose object is about to go. Rows older than removal_stale_seconds
-- (dj_udf.settings) are of a server that died mid-removal and are ignored.
-- Written only through the routines below. schema_name is '' for a
-- filepath object (shared by every schema of its store).
CREATE TABLE IF NOT EXISTS dj_udf.removals (
  store varchar(64) NOT NULL,
  schema_name varchar(64) NOT NULL,
  hash binary(16) NOT NULL,
  node varchar(320) NOT NULL,
  connection bigint unsigned NOT NULL,
  since timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
  PRIMARY KEY (store, schema_name, hash)
) ENGINE=InnoDB COMMENT 'objects a purge or sweep is removing now';
INSERT IGNORE INTO dj_udf.settings VALUES ('removal_stale_seconds', '600');

-- One row per filepath object (store, MD5 of its relative path) that a put
-- routine or a purge has written. Filepath objects are shared by every
-- schema of a store, so a purge cannot lock them through one schema's
-- tracking table: both sides write this row instead, and the database
-- orders them at every isolation level.
CREATE TABLE IF NOT EXISTS dj_udf.filepath_slots (
  store varchar(64) NOT NULL,
  hash binary(16) NOT NULL,
  PRIMARY KEY (store, hash)
) ENGINE=InnoDB COMMENT 'rows that filepath puts and purges both write';

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
-- leave the identifier ever reaches a statement.
DROP FUNCTION IF EXISTS dj_udf.tracking_table $$
CREATE FUNCTION dj_udf.tracking_table(schema_name varchar(64), store varchar(64)) RETURNS varchar(200) CHARACTER SET utf8mb4
  NOT DETERMINISTIC NO SQL SQL SECURITY INVOKER
BEGIN
  DECLARE t varchar(200) CHARACTER SET utf8mb4 DEFAULT CONVERT(dj_tracking_table(store, schema_name) USING utf8mb4);
  IF t IS NULL THEN CALL dj_udf.fail('dj_udf.tracking_table'); END IF;
  RETURN t;
END $$

-- Sets t to the tracking table's quoted name once it is known to be a plain
-- table. A view runs code of its own, with the caller's rights if it is SQL
-- SECURITY INVOKER: the routines never read or write one, so an account's
-- view can never run as the administrator who audits or cleans its schema.
-- With strict (the routines administrators run on other accounts' schemas:
-- verify, cleanup, purge, sweep), a table with triggers or generated
-- columns is refused too: a trigger runs with its definer's rights but
-- inside the caller's session. A missing table passes: the statement that
-- uses it then says so. Every routine that takes a schema and a store calls
-- this before it writes anything. (A procedure, not a function: a function
-- has every table it names opened before it runs, and the two strict
-- queries are costly even where they are not run.)
DROP PROCEDURE IF EXISTS dj_udf.usable_table $$
CREATE PROCEDURE dj_udf.usable_table(IN schema_name varchar(64), IN store varchar(64), IN strict boolean,
                                     OUT t varchar(200) CHARACTER SET utf8mb4)
  READS SQL DATA SQL SECURITY INVOKER
BEGIN
  DECLARE n varchar(64) CHARACTER SET utf8mb4 DEFAULT CONCAT('~external_', store);
  DECLARE kind, found longblob;
  DECLARE msg varchar(512) CHARACTER SET utf8mb4;
  SET t = CONVERT(dj_tracking_table(store, schema_name) USING utf8mb4);
  IF t IS NULL THEN CALL dj_udf.fail('dj_udf.usable_table'); END IF;
  -- Names bound as parameters, which the server looks up directly; compared
  -- with a routine's variables it would open every table of every schema.
  EXECUTE IMMEDIATE 'CALL dj_udf.pass((SELECT MAX(TABLE_TYPE) FROM information_schema.TABLES
                      WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?), ?)' USING schema_name, n, kind;
  IF kind IS NOT NULL AND kind <> 'BASE TABLE' THEN
    SET msg = CONCAT(t, ' is a ', CONVERT(kind USING utf8mb4), ', not a table: the dj_udf routines use only plain tracking tables');
  ELSEIF strict THEN
    EXECUTE IMMEDIATE 'CALL dj_udf.pass((SELECT COUNT(*) FROM information_schema.TRIGGERS
                        WHERE EVENT_OBJECT_SCHEMA = ? AND EVENT_OBJECT_TABLE = ?), ?)' USING schema_name, n, found;
    IF found > 0 THEN
      SET msg = CONCAT(t, ' has triggers: the dj_udf routines that administrators run do not use such a tracking table; drop them');
    ELSE
      EXECUTE IMMEDIATE 'CALL dj_udf.pass((SELECT COUNT(*) FROM information_schema.COLUMNS
                          WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND IS_GENERATED <> ''NEVER''), ?)' USING schema_name, n, found;
      IF found > 0 THEN
        SET msg = CONCAT(t, ' has generated columns: the dj_udf routines that administrators run do not use such a tracking table');
      END IF;
    END IF;
  END IF;
  IF msg IS NOT NULL THEN SIGNAL SQLSTATE 'HY000' SET MESSAGE_TEXT = msg; END IF;
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

-- Runs a statement built from checked names and literals. Dynamic SQL runs
-- only here, in dj_udf.query_value and in dj_udf.usable_table, always
-- through EXECUTE IMMEDIATE: it needs no statement name and no user
-- variable, so the caller's own prepared statements and variables stay as
-- they are. (MySQL has no EXECUTE IMMEDIATE: there this would PREPARE from
-- a user variable saved and restored around it, under a statement name no
-- client uses.)
DROP PROCEDURE IF EXISTS dj_udf.run_sql $$
CREATE PROCEDURE dj_udf.run_sql(IN stmt longtext CHARACTER SET utf8mb4)
  SQL SECURITY INVOKER MODIFIES SQL DATA
BEGIN
  EXECUTE IMMEDIATE stmt;
END $$

-- Passes its argument through: dj_udf.query_value calls it from dynamic
-- SQL to hand a value back into a routine's variable.
DROP PROCEDURE IF EXISTS dj_udf.pass $$
CREATE PROCEDURE dj_udf.pass(IN v longblob, OUT out_v longblob)
  SQL SECURITY INVOKER NO SQL
BEGIN
  SET out_v = v;
END $$

-- The value of a query that returns at most one row of one column (NULL
-- when it returns none). Dynamic SQL cannot assign a routine's variables
-- and SELECT ... INTO would need a user variable of the caller's session;
-- a CALL whose OUT argument is bound with USING needs neither. A locking
-- read (FOR UPDATE) in the query locks as usual.
DROP PROCEDURE IF EXISTS dj_udf.query_value $$
CREATE PROCEDURE dj_udf.query_value(IN query longtext CHARACTER SET utf8mb4, OUT v longblob)
  SQL SECURITY INVOKER READS SQL DATA
BEGIN
  EXECUTE IMMEDIATE CONCAT('CALL dj_udf.pass((', query, '), ?)') USING v;
END $$

-- An identifier quoted for dynamic SQL (backticks doubled), after the same
-- check of its length the server applies.
DROP FUNCTION IF EXISTS dj_udf.quoted $$
CREATE FUNCTION dj_udf.quoted(name varchar(64) CHARACTER SET utf8mb4) RETURNS varchar(200) CHARACTER SET utf8mb4
  DETERMINISTIC NO SQL SQL SECURITY INVOKER
BEGIN
  DECLARE msg varchar(512);
  IF name IS NULL OR name = '' THEN
    SET msg = 'dj_udf: a table or column name is missing';
    SIGNAL SQLSTATE 'HY000' SET MESSAGE_TEXT = msg;
  END IF;
  RETURN CONCAT('`', REPLACE(name, '`', '``'), '`');
END $$

-- `schema`.`table` of a user table, quoted.
DROP FUNCTION IF EXISTS dj_udf.column_ref $$
CREATE FUNCTION dj_udf.column_ref(schema_name varchar(64) CHARACTER SET utf8mb4, table_name varchar(64) CHARACTER SET utf8mb4)
  RETURNS varchar(400) CHARACTER SET utf8mb4
  DETERMINISTIC NO SQL SQL SECURITY INVOKER
  RETURN CONCAT(dj_udf.quoted(schema_name), '.', dj_udf.quoted(table_name)) $$

-- Runs a statement over dj_udf.pages (dj_udf.run_sql), with the session's
-- group_concat_max_len raised to 64 MiB for it, since a page is a JSON
-- array of up to 1000 items, and put back however the statement ends.
DROP PROCEDURE IF EXISTS dj_udf.run_paged $$
CREATE PROCEDURE dj_udf.run_paged(IN stmt longtext CHARACTER SET utf8mb4)
  SQL SECURITY INVOKER MODIFIES SQL DATA
BEGIN
  DECLARE saved bigint unsigned DEFAULT @@SESSION.group_concat_max_len;
  DECLARE EXIT HANDLER FOR SQLEXCEPTION
  BEGIN
    SET SESSION group_concat_max_len = saved;
    RESIGNAL;
  END;
  SET SESSION group_concat_max_len = GREATEST(saved, 64 << 20);
  CALL dj_udf.run_sql(stmt);
  SET SESSION group_concat_max_len = saved;
END $$

-- A derived table `p` of the rows of `query` (columns: hash, item) in pages
-- of 1000 by hash: `p.page`, and `p.items`, a JSON array of their items.
-- The batch functions take one page each, from a JSON_TABLE beside it.
DROP FUNCTION IF EXISTS dj_udf.pages $$
CREATE FUNCTION dj_udf.pages(query longtext CHARACTER SET utf8mb4) RETURNS longtext CHARACTER SET utf8mb4
  DETERMINISTIC NO SQL SQL SECURITY INVOKER
  RETURN CONCAT('(SELECT n.rn DIV 1000 AS page, JSON_ARRAYAGG(n.item) AS items FROM (SELECT q.item, ROW_NUMBER() OVER (ORDER BY q.hash) - 1 AS rn FROM (',
                query, ') q) n GROUP BY n.rn DIV 1000) p') $$

-- Whether table t (a quoted name from dj_udf.usable_table) has a row for
-- hash h, and its contents_hash: '' for a row without one, NULL for no row.
DROP PROCEDURE IF EXISTS dj_udf.lookup $$
CREATE PROCEDURE dj_udf.lookup(IN t varchar(200) CHARACTER SET utf8mb4, IN h binary(16), OUT tracked_contents_hash varbinary(16))
  SQL SECURITY INVOKER READS SQL DATA
BEGIN
  CALL dj_udf.query_value(CONCAT('SELECT IF(COUNT(*) = 0, NULL, COALESCE(MAX(contents_hash), '''')) FROM ', t,
                                 ' WHERE hash = ', dj_udf.bytes_literal(h)), tracked_contents_hash);
END $$

-- Creates `<schema>`.`~external_<store>` exactly as DataJoint 0.14 does.
DROP PROCEDURE IF EXISTS dj_udf.create_tracking_table $$
CREATE PROCEDURE dj_udf.create_tracking_table(IN schema_name varchar(64), IN store varchar(64))
  SQL SECURITY INVOKER MODIFIES SQL DATA
BEGIN
  DECLARE t varchar(200) CHARACTER SET utf8mb4;
  DECLARE msg varchar(512);
  CALL dj_udf.usable_table(schema_name, store, FALSE, t);
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

-- Inserts or refreshes a tracking row of table t (a quoted name from
-- dj_udf.usable_table) the way DataJoint does, then tells whether the
-- object is missing. Objects are written before their row, so a purge that
-- ran between the write and this insert may have removed the object; a purge
-- running now holds this row's slot (dj_udf.hold_slot), so the insert waits
-- for it to commit, at every isolation level. With the row in place no later
-- purge removes the object, so a caller told object_gone writes it again.
-- A removal under way on another server of a cluster is not held off by
-- this row's lock: dj_udf.check_removals refuses the put instead.
-- The refreshed timestamp starts the grace period of dj_udf.delete_unused.
DROP PROCEDURE IF EXISTS dj_udf.track $$
CREATE PROCEDURE dj_udf.track(IN t varchar(200) CHARACTER SET utf8mb4, IN schema_name varchar(64), IN store varchar(64),
                              IN h binary(16), IN sz bigint unsigned,
                              IN attachment_name varchar(255), IN filepath varchar(1000), IN contents_hash binary(16),
                              OUT object_gone boolean)
  SQL SECURITY INVOKER MODIFIES SQL DATA
BEGIN
  CALL dj_udf.check_removals(store, schema_name, JSON_ARRAY(HEX(h)));
  CALL dj_udf.run_sql(CONCAT('INSERT INTO ', t,
    ' (hash, size, attachment_name, filepath, contents_hash) VALUES (', dj_udf.bytes_literal(h), ', ', sz, ', ',
    dj_udf.text_literal(attachment_name), ', ', dj_udf.text_literal(filepath), ', ', dj_udf.bytes_literal(contents_hash),
    ') ON DUPLICATE KEY UPDATE timestamp = CURRENT_TIMESTAMP'));
  SET object_gone = dj_object_size(store, schema_name, h, attachment_name, filepath) IS NULL;
END $$

-- Writes the slot row of filepath object h of a store (dj_udf.filepath_slots).
-- Runs with its definer's rights so that no account needs a privilege on
-- that table; it writes nothing else.
DROP PROCEDURE IF EXISTS dj_udf.lock_filepath $$
CREATE PROCEDURE dj_udf.lock_filepath(IN store varchar(64), IN h binary(16))
  SQL SECURITY DEFINER MODIFIES SQL DATA
BEGIN
  INSERT INTO dj_udf.filepath_slots (store, hash) VALUES (store, h) ON DUPLICATE KEY UPDATE hash = VALUES(hash);
END $$

-- blob@store: stores serialized blob bytes, tracks them, returns the hash.
DROP PROCEDURE IF EXISTS dj_udf.blob_put $$
CREATE PROCEDURE dj_udf.blob_put(IN store varchar(64), IN schema_name varchar(64), IN data longblob, OUT hash binary(16))
  SQL SECURITY INVOKER MODIFIES SQL DATA
BEGIN
  DECLARE t varchar(200) CHARACTER SET utf8mb4;
  DECLARE h binary(16);
  DECLARE n bigint unsigned;
  DECLARE gone boolean;
  CALL dj_udf.usable_table(schema_name, store, FALSE, t);
  IF data IS NULL THEN
    SET hash = NULL;
  ELSE
    -- IF(RAND() >= 0, data, NULL) is `data`, but not a constant: MariaDB
    -- copies a loadable function's constant string arguments before the
    -- call (a routine's variable is one within a statement), and the
    -- library reads its argument where it is, so this spares the server a
    -- copy of the whole object. The same in every routine that passes
    -- object bytes to a dj_* function.
    SET h = dj_blob_put(store, schema_name, IF(RAND() >= 0, data, NULL));
    IF h IS NULL THEN CALL dj_udf.fail('dj_udf.blob_put'); END IF;
    -- The size into a variable first: LENGTH(data) as an argument of a
    -- nested CALL makes the server copy the whole value once more.
    SET n = LENGTH(data);
    CALL dj_udf.track(t, schema_name, store, h, n, NULL, NULL, NULL, gone);
    IF gone AND dj_blob_put(store, schema_name, IF(RAND() >= 0, data, NULL)) IS NULL THEN CALL dj_udf.fail('dj_udf.blob_put'); END IF;
    SET hash = h;
  END IF;
END $$

-- attach@store from bytes sent by the client.
DROP PROCEDURE IF EXISTS dj_udf.attach_put $$
CREATE PROCEDURE dj_udf.attach_put(IN store varchar(64), IN schema_name varchar(64), IN attachment_name varchar(255),
                                   IN data longblob, OUT hash binary(16))
  SQL SECURITY INVOKER MODIFIES SQL DATA
BEGIN
  DECLARE t varchar(200) CHARACTER SET utf8mb4;
  DECLARE h binary(16);
  DECLARE n bigint unsigned;
  DECLARE gone boolean;
  CALL dj_udf.usable_table(schema_name, store, FALSE, t);
  IF data IS NULL THEN
    SET hash = NULL;
  ELSE
    SET h = dj_attach_put(store, schema_name, attachment_name, IF(RAND() >= 0, data, NULL));
    IF h IS NULL THEN CALL dj_udf.fail('dj_udf.attach_put'); END IF;
    SET n = LENGTH(data);
    CALL dj_udf.track(t, schema_name, store, h, n, attachment_name, NULL, NULL, gone);
    IF gone AND dj_attach_put(store, schema_name, attachment_name, IF(RAND() >= 0, data, NULL)) IS NULL THEN CALL dj_udf.fail('dj_udf.attach_put'); END IF;
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
  DECLARE t varchar(200) CHARACTER SET utf8mb4;
  DECLARE h binary(16);
  DECLARE name varchar(255) CHARACTER SET utf8mb4;
  DECLARE sz bigint;
  DECLARE gone boolean;
  CALL dj_udf.usable_table(schema_name, store, FALSE, t);
  SET name = CONVERT(dj_attachment_name(server_path) USING utf8mb4);
  IF name IS NULL THEN CALL dj_udf.fail('dj_udf.attach_put_file'); END IF;
  SET h = dj_attach_put_file(store, schema_name, server_path);
  IF h IS NULL THEN CALL dj_udf.fail('dj_udf.attach_put_file'); END IF;
  SET sz = dj_object_size(store, schema_name, h, name, NULL);
  IF sz IS NULL THEN CALL dj_udf.fail('dj_udf.attach_put_file'); END IF;
  CALL dj_udf.track(t, schema_name, store, h, sz, name, NULL, NULL, gone);
  IF gone AND dj_attach_put_file(store, schema_name, server_path) IS NULL THEN CALL dj_udf.fail('dj_udf.attach_put_file'); END IF;
  SET hash = h;
END $$

-- filepath@store: a file below the store's stage, uploaded once; a different
-- version under the same relative path is refused, as DataJoint refuses it.
-- Filepath objects are shared by all schemas of a store: the slot row
-- (dj_udf.lock_filepath) is written before the upload, so a purge of the
-- object from any schema either finishes before it or sees this row.
DROP PROCEDURE IF EXISTS dj_udf.filepath_put $$
CREATE PROCEDURE dj_udf.filepath_put(IN store varchar(64), IN schema_name varchar(64), IN server_path varchar(4096),
                                     OUT hash binary(16))
  SQL SECURITY INVOKER MODIFIES SQL DATA
BEGIN
  DECLARE t varchar(200) CHARACTER SET utf8mb4;
  DECLARE info text CHARACTER SET utf8mb4;
  DECLARE h, ch binary(16);
  DECLARE tracked_ch varbinary(16);
  DECLARE rel varchar(1000) CHARACTER SET utf8mb4;
  DECLARE sz bigint unsigned;
  DECLARE gone boolean;
  DECLARE msg varchar(512);
  CALL dj_udf.usable_table(schema_name, store, FALSE, t);
  SET info = CONVERT(dj_filepath_info(store, server_path) USING utf8mb4);
  IF info IS NULL THEN CALL dj_udf.fail('dj_udf.filepath_put'); END IF;
  SET h = UNHEX(JSON_UNQUOTE(JSON_EXTRACT(info, '$.hash')));
  SET rel = JSON_UNQUOTE(JSON_EXTRACT(info, '$.filepath'));
  SET sz = JSON_EXTRACT(info, '$.size');
  SET ch = IF(JSON_TYPE(JSON_EXTRACT(info, '$.contents_hash')) = 'NULL', NULL,
              UNHEX(JSON_UNQUOTE(JSON_EXTRACT(info, '$.contents_hash'))));
  CALL dj_udf.lookup(t, h, tracked_ch);
  -- Like DataJoint, a file above filepath_checksum_size_limit_insert (no
  -- contents_hash) is not compared with the row already there.
  IF tracked_ch IS NOT NULL AND ch IS NOT NULL AND NOT (NULLIF(tracked_ch, '') <=> ch) THEN
    SET msg = LEFT(CONCAT('A different version of ''', rel, ''' has already been placed.'), 512);
    SIGNAL SQLSTATE 'HY000' SET MESSAGE_TEXT = msg;
  END IF;
  CALL dj_udf.lock_filepath(store, h);
  IF tracked_ch IS NULL AND dj_filepath_put(store, server_path, ch) IS NULL THEN CALL dj_udf.fail('dj_udf.filepath_put'); END IF;
  CALL dj_udf.track(t, schema_name, store, h, sz, NULL, rel, ch, gone);
  IF gone AND dj_filepath_put(store, server_path, ch) IS NULL THEN CALL dj_udf.fail('dj_udf.filepath_put'); END IF;
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

-- One result row per tracking row, with dj_verify's status, in hash order.
-- Names reach the library as UTF-8 whatever the table's character set (a
-- latin1 schema's tracking table holds them as latin1).
-- The rows go to dj_verify_many a page of 1000 at a time, which checks up to
-- the store's max_parallel objects at once; pages are JSON arrays, hence the
-- session's group_concat_max_len is raised for the statement.
DROP PROCEDURE IF EXISTS dj_udf.verify $$
CREATE PROCEDURE dj_udf.verify(IN schema_name varchar(64), IN store varchar(64))
  SQL SECURITY INVOKER READS SQL DATA
BEGIN
  DECLARE t varchar(200) CHARACTER SET utf8mb4;
  CALL dj_udf.usable_table(schema_name, store, TRUE, t);
  CALL dj_udf.run_paged(CONCAT(
    'SELECT UPPER(v.hash) AS hash, v.size, v.attachment_name, v.filepath, v.status FROM ',
    dj_udf.pages(CONCAT('SELECT hash, JSON_OBJECT(''hash'', HEX(hash), ''size'', size, ''attachment_name'', CONVERT(attachment_name USING utf8mb4), ',
                        '''filepath'', CONVERT(filepath USING utf8mb4), ''contents_hash'', HEX(contents_hash)) AS item FROM ', t)),
    ', JSON_TABLE(CONVERT(dj_verify_many(', dj_udf.text_literal(store), ', ', dj_udf.text_literal(schema_name), ', p.items) USING utf8mb4), ',
    '''$[*]'' COLUMNS (i FOR ORDINALITY, hash char(32) PATH ''$.hash'', size bigint unsigned PATH ''$.size'', ',
    'attachment_name varchar(255) CHARACTER SET utf8mb4 PATH ''$.attachment_name'', ',
    'filepath varchar(1000) CHARACTER SET utf8mb4 PATH ''$.filepath'', status varchar(8192) CHARACTER SET utf8mb4 PATH ''$.status'')) v ',
    'ORDER BY p.page, v.i'));
END $$

-- ---------------------------------------------------------------------------
-- The purge queue's routines. They run with their definer's rights (the
-- account that ran this script), so that the queue is written only here:
-- entries are copied from real tracking rows (dj_udf.enqueue), and taken
-- or marked failed only with the purge key (dj_udf.claim_batch,
-- dj_udf.record_failure). No account needs any privilege on the queue.
-- ---------------------------------------------------------------------------

-- Whether k is the purge key, compared through SHA-256 so that the time
-- taken says nothing about how much of it matched.
DROP FUNCTION IF EXISTS dj_udf.is_purge_key $$
CREATE FUNCTION dj_udf.is_purge_key(k varchar(255)) RETURNS boolean
  NOT DETERMINISTIC READS SQL DATA SQL SECURITY DEFINER
  RETURN k IS NOT NULL AND EXISTS (SELECT 1 FROM dj_udf.purge_key WHERE SHA2(purge_key, 256) = SHA2(k, 256)) $$

-- The grace period of dj_udf.delete_unused, in seconds (dj_udf.settings).
DROP FUNCTION IF EXISTS dj_udf.cleanup_grace $$
CREATE FUNCTION dj_udf.cleanup_grace() RETURNS bigint unsigned
  NOT DETERMINISTIC READS SQL DATA SQL SECURITY DEFINER
  RETURN COALESCE((SELECT CAST(value AS UNSIGNED) FROM dj_udf.settings WHERE name = 'cleanup_grace_seconds'), 3600) $$

-- Queues the object of the tracking row for hash h, copied from that row
-- (so an entry always names an object some row named, by that row's own
-- hash, name and filepath). dj_udf.delete_unused calls it just before it
-- deletes the row, in the same transaction, holding the row's lock: the
-- row is read as it now is (a locking read), not as an older snapshot.
DROP PROCEDURE IF EXISTS dj_udf.enqueue $$
CREATE PROCEDURE dj_udf.enqueue(IN schema_name varchar(64), IN store varchar(64), IN h binary(16))
  SQL SECURITY DEFINER MODIFIES SQL DATA
BEGIN
  DECLARE t varchar(200) CHARACTER SET utf8mb4;
  DECLARE r longblob;
  DECLARE j longtext CHARACTER SET utf8mb4;
  DECLARE msg varchar(512);
  CALL dj_udf.usable_table(schema_name, store, FALSE, t);
  CALL dj_udf.query_value(CONCAT('SELECT CONVERT(JSON_OBJECT(''size'', size, ',
    '''attachment_name'', CONVERT(attachment_name USING utf8mb4), ''filepath'', CONVERT(filepath USING utf8mb4), ',
    '''contents_hash'', HEX(contents_hash)) USING utf8mb4) FROM ', t,
    ' WHERE hash = ', dj_udf.bytes_literal(h), ' FOR UPDATE'), r);
  IF r IS NULL THEN
    SET msg = CONCAT('dj_udf.enqueue: ', t, ' has no row for ', HEX(h), ' to queue');
    SIGNAL SQLSTATE 'HY000' SET MESSAGE_TEXT = msg;
  END IF;
  SET j = CONVERT(r USING utf8mb4);
  INSERT INTO dj_udf.purge_queue (schema_name, store, hash, size, attachment_name, filepath, contents_hash)
    VALUES (schema_name, store, h, JSON_VALUE(j, '$.size'), JSON_VALUE(j, '$.attachment_name'),
            JSON_VALUE(j, '$.filepath'), UNHEX(JSON_VALUE(j, '$.contents_hash')));
END $$

-- Up to n entries of (schema, store) after id after_id in the queue, as a
-- JSON array of {qid, hash, attachment_name, filepath}, and the last id
-- among them; items is NULL when there are none. They stay queued until
-- dj_udf.take_entry; two purges never remove one object at once
-- (dj_udf.begin_removal).
DROP PROCEDURE IF EXISTS dj_udf.claim_next $$
DROP PROCEDURE IF EXISTS dj_udf.claim_batch $$
CREATE PROCEDURE dj_udf.claim_batch(IN k varchar(255), IN schema_name varchar(64), IN store varchar(64),
                                    IN after_id bigint unsigned, IN n int unsigned,
                                    OUT items longtext CHARACTER SET utf8mb4, OUT last_id bigint unsigned)
  SQL SECURITY DEFINER READS SQL DATA
BEGIN
  DECLARE qid bigint unsigned;
  DECLARE h binary(16);
  DECLARE nm varchar(255) CHARACTER SET utf8mb4;
  DECLARE fp varchar(1000) CHARACTER SET utf8mb4;
  DECLARE done int DEFAULT 0;
  DECLARE entries CURSOR FOR
    SELECT q.id, q.hash, q.attachment_name, q.filepath FROM dj_udf.purge_queue q
     WHERE q.schema_name = schema_name AND q.store = store AND q.id > after_id ORDER BY q.id LIMIT n;
  DECLARE CONTINUE HANDLER FOR NOT FOUND SET done = 1;
  IF NOT dj_udf.is_purge_key(k) THEN
    SIGNAL SQLSTATE 'HY000' SET MESSAGE_TEXT = 'dj_udf.claim_batch: wrong purge key';
  END IF;
  -- built row by row: JSON_ARRAYAGG would be cut at the session's group_concat_max_len
  SET items = NULL, last_id = NULL;
  OPEN entries;
  entry_loop: LOOP
    FETCH entries INTO qid, h, nm, fp;
    IF done THEN LEAVE entry_loop; END IF;
    SET items = JSON_ARRAY_APPEND(COALESCE(items, '[]'), '$',
                                  JSON_OBJECT('qid', qid, 'hash', HEX(h), 'attachment_name', nm, 'filepath', fp)),
        last_id = qid;
  END LOOP;
  CLOSE entries;
END $$

-- Takes entry qid out of the queue, inside the caller's transaction.
DROP PROCEDURE IF EXISTS dj_udf.take_entry $$
CREATE PROCEDURE dj_udf.take_entry(IN k varchar(255), IN qid bigint unsigned)
  SQL SECURITY DEFINER MODIFIES SQL DATA
BEGIN
  IF NOT dj_udf.is_purge_key(k) THEN
    SIGNAL SQLSTATE 'HY000' SET MESSAGE_TEXT = 'dj_udf.take_entry: wrong purge key';
  END IF;
  DELETE FROM dj_udf.purge_queue WHERE id = qid;
END $$

-- Whether queue entry qid is still there, read as it now is (a locking
-- read): a purge that waited for another one's removal of the same object
-- finds its entry taken, and does not remove (and count) the object again.
DROP PROCEDURE IF EXISTS dj_udf.entry_queued $$
CREATE PROCEDURE dj_udf.entry_queued(IN k varchar(255), IN qid bigint unsigned, OUT queued boolean)
  SQL SECURITY DEFINER READS SQL DATA
BEGIN
  IF NOT dj_udf.is_purge_key(k) THEN
    SIGNAL SQLSTATE 'HY000' SET MESSAGE_TEXT = 'dj_udf.entry_queued: wrong purge key';
  END IF;
  SET queued = EXISTS (SELECT 1 FROM dj_udf.purge_queue WHERE id = qid FOR UPDATE);
END $$

-- This server, as dj_udf.removals names it.
DROP FUNCTION IF EXISTS dj_udf.this_node $$
CREATE FUNCTION dj_udf.this_node() RETURNS varchar(320) CHARACTER SET utf8mb4
  NOT DETERMINISTIC NO SQL SQL SECURITY INVOKER
  RETURN CONCAT(@@hostname, ':', @@port) $$

-- Records, inside the caller's transaction, that this connection is about to
-- remove object h; taken is FALSE when another removal of it is under way
-- (its row is younger than removal_stale_seconds).
DROP PROCEDURE IF EXISTS dj_udf.begin_removal $$
CREATE PROCEDURE dj_udf.begin_removal(IN k varchar(255), IN store varchar(64), IN schema_name varchar(64), IN h binary(16),
                                      OUT taken boolean)
  SQL SECURITY DEFINER MODIFIES SQL DATA
BEGIN
  -- Local variables, so that a statement-based binary log gets values.
  DECLARE me varchar(320) CHARACTER SET utf8mb4 DEFAULT dj_udf.this_node();
  DECLARE conn bigint unsigned DEFAULT CONNECTION_ID();
  DECLARE stale timestamp DEFAULT NOW() - INTERVAL dj_udf.removal_stale() SECOND;
  IF NOT dj_udf.is_purge_key(k) THEN
    SIGNAL SQLSTATE 'HY000' SET MESSAGE_TEXT = 'dj_udf.begin_removal: wrong purge key';
  END IF;
  DELETE FROM dj_udf.removals
   WHERE removals.store = store AND removals.schema_name = schema_name AND hash = h AND since < stale;
  INSERT IGNORE INTO dj_udf.removals (store, schema_name, hash, node, connection)
    VALUES (store, schema_name, h, me, conn);
  SET taken = ROW_COUNT() = 1;
END $$

-- Removes this connection's row of object h from dj_udf.removals, inside the
-- caller's transaction.
DROP PROCEDURE IF EXISTS dj_udf.end_removal $$
CREATE PROCEDURE dj_udf.end_removal(IN k varchar(255), IN store varchar(64), IN schema_name varchar(64), IN h binary(16))
  SQL SECURITY DEFINER MODIFIES SQL DATA
BEGIN
  DECLARE me varchar(320) CHARACTER SET utf8mb4 DEFAULT dj_udf.this_node();
  DECLARE conn bigint unsigned DEFAULT CONNECTION_ID();
  IF NOT dj_udf.is_purge_key(k) THEN
    SIGNAL SQLSTATE 'HY000' SET MESSAGE_TEXT = 'dj_udf.end_removal: wrong purge key';
  END IF;
  DELETE FROM dj_udf.removals
   WHERE removals.store = store AND removals.schema_name = schema_name AND hash = h AND node = me AND connection = conn;
END $$

-- dj_udf.end_removal for every object of rows (a JSON array of {hash,
-- filepath}) at once.
DROP PROCEDURE IF EXISTS dj_udf.end_removals $$
CREATE PROCEDURE dj_udf.end_removals(IN k varchar(255), IN store varchar(64), IN schema_name varchar(64),
                                     IN rows_json longtext CHARACTER SET utf8mb4)
  SQL SECURITY DEFINER MODIFIES SQL DATA
BEGIN
  DECLARE i int unsigned DEFAULT 0;
  DECLARE h binary(16);
  DECLARE owner varchar(64) CHARACTER SET utf8mb4;
  IF NOT dj_udf.is_purge_key(k) THEN
    SIGNAL SQLSTATE 'HY000' SET MESSAGE_TEXT = 'dj_udf.end_removals: wrong purge key';
  END IF;
  -- one statement per object, with values a statement-based binary log can carry
  WHILE i < JSON_LENGTH(rows_json) DO
    SET h = UNHEX(JSON_VALUE(rows_json, CONCAT('$[', i, '].hash'))),
        owner = IF(JSON_VALUE(rows_json, CONCAT('$[', i, '].filepath')) IS NULL, schema_name, ''),
        i = i + 1;
    CALL dj_udf.end_removal(k, store, owner, h);
  END WHILE;
END $$

-- dj_udf.record_failure for the queue entries of rows (a JSON array of
-- {qid}) at once.
DROP PROCEDURE IF EXISTS dj_udf.record_failures $$
CREATE PROCEDURE dj_udf.record_failures(IN k varchar(255), IN rows_json longtext CHARACTER SET utf8mb4, IN err varchar(1000))
  SQL SECURITY DEFINER MODIFIES SQL DATA
BEGIN
  DECLARE i int unsigned DEFAULT 0;
  DECLARE qid bigint unsigned;
  IF NOT dj_udf.is_purge_key(k) THEN
    SIGNAL SQLSTATE 'HY000' SET MESSAGE_TEXT = 'dj_udf.record_failures: wrong purge key';
  END IF;
  WHILE i < JSON_LENGTH(rows_json) DO
    SET qid = JSON_VALUE(rows_json, CONCAT('$[', i, '].qid')), i = i + 1;
    IF qid IS NOT NULL THEN CALL dj_udf.record_failure(k, qid, err); END IF;
  END WHILE;
END $$

-- The age in seconds past which a row of dj_udf.removals is taken for one a
-- dead server left (dj_udf.settings).
DROP FUNCTION IF EXISTS dj_udf.removal_stale $$
CREATE FUNCTION dj_udf.removal_stale() RETURNS bigint unsigned
  NOT DETERMINISTIC READS SQL DATA SQL SECURITY DEFINER
  RETURN COALESCE((SELECT CAST(value AS UNSIGNED) FROM dj_udf.settings WHERE name = 'removal_stale_seconds'), 600) $$

-- Refuses a put of objects (a JSON array of 32-digit hex hashes) of which
-- another server is removing one now: the put's tracking row would not hold
-- that removal off (row locks do not reach other servers), so the caller's
-- transaction must roll back and run again, which then waits for nothing
-- and writes the object again. Signalled as a deadlock (1213), which is
-- what clients of a cluster retry. A removal on this server is held off by
-- the row's lock instead (dj_udf.hold_slot), and is let be.
DROP PROCEDURE IF EXISTS dj_udf.check_removals $$
CREATE PROCEDURE dj_udf.check_removals(IN store varchar(64), IN schema_name varchar(64), IN hashes longtext CHARACTER SET utf8mb4)
  SQL SECURITY DEFINER READS SQL DATA
BEGIN
  DECLARE other varchar(320) CHARACTER SET utf8mb4;
  DECLARE h binary(16);
  DECLARE msg varchar(512) CHARACTER SET utf8mb4;
  DECLARE CONTINUE HANDLER FOR NOT FOUND SET other = NULL;
  -- Every put passes here: with no removal under way in the store (nearly
  -- always), one index probe and nothing else.
  IF EXISTS (SELECT 1 FROM dj_udf.removals r WHERE r.store = store) THEN
    SELECT r.node, r.hash INTO other, h FROM dj_udf.removals r
      JOIN JSON_TABLE(hashes, '$[*]' COLUMNS (x char(32) PATH '$')) j ON r.hash = UNHEX(j.x)
     WHERE r.store = store AND r.schema_name IN (schema_name, '') AND r.node <> dj_udf.this_node()
       AND r.since >= NOW() - INTERVAL dj_udf.removal_stale() SECOND
     LIMIT 1;
  END IF;
  IF other IS NOT NULL THEN
    SET msg = LEFT(CONCAT('dj_udf: object ', HEX(h), ' of store ''', store, ''' is being removed by ', other,
                          '; roll back and run the transaction again'), 512);
    SIGNAL SQLSTATE '40001' SET MESSAGE_TEXT = msg, MYSQL_ERRNO = 1213;
  END IF;
END $$

-- Keeps a failed entry in the queue with its error, for the next run.
DROP PROCEDURE IF EXISTS dj_udf.record_failure $$
CREATE PROCEDURE dj_udf.record_failure(IN k varchar(255), IN qid bigint unsigned, IN err varchar(1000))
  SQL SECURITY DEFINER MODIFIES SQL DATA
BEGIN
  IF NOT dj_udf.is_purge_key(k) THEN
    SIGNAL SQLSTATE 'HY000' SET MESSAGE_TEXT = 'dj_udf.record_failure: wrong purge key';
  END IF;
  UPDATE dj_udf.purge_queue SET last_error = err WHERE id = qid;
END $$

-- Removes the slot row of a filepath object that a purge removed.
DROP PROCEDURE IF EXISTS dj_udf.release_filepath $$
CREATE PROCEDURE dj_udf.release_filepath(IN store varchar(64), IN h binary(16))
  SQL SECURITY DEFINER MODIFIES SQL DATA
BEGIN
  DELETE FROM dj_udf.filepath_slots WHERE filepath_slots.store = store AND hash = h;
END $$

-- ---------------------------------------------------------------------------
-- Cleanup: delete_unused, then purge.
-- ---------------------------------------------------------------------------

-- Deletes the tracking rows that no column references and that no put has
-- written for cleanup_grace_seconds (dj_udf.settings), queueing their
-- objects for dj_udf.purge, one row per transaction. NULL-safe: NOT EXISTS
-- ignores NULLs in referencing columns (DataJoint issue #1000 used NOT IN).
-- A row referenced meanwhile (the foreign key refuses its deletion) is
-- skipped, a deadlock is retried. Commits: it must not run inside a
-- caller's transaction.
DROP PROCEDURE IF EXISTS dj_udf.delete_unused $$
CREATE PROCEDURE dj_udf.delete_unused(IN schema_name varchar(64), IN store varchar(64), OUT rows_deleted bigint)
  SQL SECURITY INVOKER MODIFIES SQL DATA
BEGIN
  DECLARE t varchar(200) CHARACTER SET utf8mb4;
  DECLARE grace bigint unsigned DEFAULT dj_udf.cleanup_grace();
  DECLARE pred longtext CHARACTER SET utf8mb4 DEFAULT '';
  DECLARE rs, rt, rc varchar(64) CHARACTER SET utf8mb4;
  DECLARE kind varchar(64) CHARACTER SET utf8mb4;
  DECLARE msg varchar(512) CHARACTER SET utf8mb4;
  DECLARE done, in_use, deadlock boolean DEFAULT FALSE;
  DECLARE deadlocks int DEFAULT 0;
  DECLARE after_hash varbinary(16) DEFAULT '';
  DECLARE h varbinary(16);
  DECLARE still bigint;
  DECLARE refs CURSOR FOR
    SELECT k.TABLE_SCHEMA, k.TABLE_NAME, k.COLUMN_NAME, MAX(x.TABLE_TYPE)
      FROM information_schema.KEY_COLUMN_USAGE k
      LEFT JOIN information_schema.TABLES x ON x.TABLE_SCHEMA = k.TABLE_SCHEMA AND x.TABLE_NAME = k.TABLE_NAME
     WHERE k.REFERENCED_TABLE_SCHEMA = schema_name
       AND k.REFERENCED_TABLE_NAME = CONCAT('~external_', store)
       AND k.REFERENCED_COLUMN_NAME = 'hash'
     GROUP BY k.TABLE_SCHEMA, k.TABLE_NAME, k.COLUMN_NAME;
  DECLARE CONTINUE HANDLER FOR NOT FOUND SET done = TRUE;
  DECLARE EXIT HANDLER FOR SQLEXCEPTION
  BEGIN
    ROLLBACK;
    RESIGNAL;
  END;
  CALL dj_udf.usable_table(schema_name, store, TRUE, t);
  -- Referencing tables are read, never written; only plain tables are read.
  OPEN refs;
  ref_loop: LOOP
    FETCH refs INTO rs, rt, rc, kind;
    IF done THEN LEAVE ref_loop; END IF;
    IF kind IS NULL OR kind <> 'BASE TABLE' THEN
      SET msg = CONCAT('dj_udf.delete_unused: `', rs, '`.`', rt, '` references ', t, ' but is not a plain table');
      SIGNAL SQLSTATE 'HY000' SET MESSAGE_TEXT = msg;
    END IF;
    SET pred = CONCAT(pred, ' AND NOT EXISTS (SELECT 1 FROM `', REPLACE(rs, '`', '``'), '`.`', REPLACE(rt, '`', '``'),
                      '` r WHERE r.`', REPLACE(rc, '`', '``'), '` = e.hash)');
  END LOOP;
  CLOSE refs;
  SET rows_deleted = 0;
  row_loop: LOOP
    SET h = NULL, in_use = FALSE, deadlock = FALSE;
    BEGIN
      DECLARE EXIT HANDLER FOR 1451 SET in_use = TRUE;
      DECLARE EXIT HANDLER FOR 1213 SET deadlock = TRUE;
      START TRANSACTION;
      -- The next candidate, then the same test on its row alone, locked: a
      -- locking read with LIMIT would be an unsafe statement for STATEMENT
      -- binary logging.
      CALL dj_udf.query_value(CONCAT('SELECT e.hash FROM ', t, ' e WHERE e.hash > ', dj_udf.bytes_literal(after_hash),
        ' AND e.timestamp <= NOW() - INTERVAL ', grace, ' SECOND', pred, ' ORDER BY e.hash LIMIT 1'), h);
      IF h IS NOT NULL THEN
        CALL dj_udf.query_value(CONCAT('SELECT COUNT(*) FROM ', t, ' e WHERE e.hash = ', dj_udf.bytes_literal(h),
          ' AND e.timestamp <= NOW() - INTERVAL ', grace, ' SECOND', pred, ' FOR UPDATE'), still);
        IF still THEN
          CALL dj_udf.enqueue(schema_name, store, h);
          CALL dj_udf.run_sql(CONCAT('DELETE FROM ', t, ' WHERE hash = ', dj_udf.bytes_literal(h)));
        END IF;
      END IF;
    END;
    IF deadlock THEN
      ROLLBACK;
      SET deadlocks = deadlocks + 1;
      IF deadlocks > 20 THEN
        SIGNAL SQLSTATE '40001' SET MESSAGE_TEXT = 'dj_udf.delete_unused: deadlocked 20 times in a row; run it again', MYSQL_ERRNO = 1213;
      END IF;
    ELSEIF in_use THEN
      -- referenced since it was found: it stays, with its object
      ROLLBACK;
      SET after_hash = h;
    ELSE
      COMMIT;
      IF h IS NULL THEN LEAVE row_loop; END IF;
      SET after_hash = h, rows_deleted = rows_deleted + IF(still, 1, 0), deadlocks = 0;
    END IF;
  END LOOP;
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

-- Writes a placeholder row for hash h into tracking table t (a quoted name
-- from dj_udf.usable_table), unless a row for h is there: tracked tells
-- which. Until the caller's transaction ends, the placeholder holds off any
-- put of h into t (its INSERT waits for this one), at every isolation level
-- and also where row locks do not reach other servers (a Galera cluster
-- certifies the two writes against each other). The caller removes the
-- placeholder before it commits (dj_udf.delete_if_untracked).
DROP PROCEDURE IF EXISTS dj_udf.hold_slot $$
CREATE PROCEDURE dj_udf.hold_slot(IN t varchar(200) CHARACTER SET utf8mb4, IN h binary(16), OUT tracked boolean)
  SQL SECURITY INVOKER MODIFIES SQL DATA
BEGIN
  DECLARE CONTINUE HANDLER FOR 1062 SET tracked = TRUE;
  SET tracked = FALSE;
  CALL dj_udf.run_sql(CONCAT('INSERT INTO ', t, ' (hash, size) VALUES (', dj_udf.bytes_literal(h), ', 0)'));
END $$

-- Holds the tracking-row slots of object h inside the caller's transaction
-- (dj_udf.hold_slot): in schema_name's tracking table, or for a filepath
-- object in every schema's table of the store, after its slot row
-- (dj_udf.lock_filepath), once its hash is checked to be the MD5 of its
-- path. tracked: a row names it (then nothing is held); held: the tables
-- holding a placeholder, one per line, for dj_udf.release_slots.
DROP PROCEDURE IF EXISTS dj_udf.hold_slots $$
CREATE PROCEDURE dj_udf.hold_slots(IN schema_name varchar(64), IN store varchar(64), IN h binary(16), IN filepath varchar(1000),
                                   OUT tracked boolean, OUT held longtext CHARACTER SET utf8mb4)
  SQL SECURITY INVOKER MODIFIES SQL DATA
BEGIN
  DECLARE t varchar(200) CHARACTER SET utf8mb4;
  DECLARE s varchar(64) CHARACTER SET utf8mb4;
  DECLARE done boolean DEFAULT FALSE;
  DECLARE msg varchar(512) CHARACTER SET utf8mb4;
  DECLARE store_tables CURSOR FOR
    SELECT TABLE_SCHEMA FROM information_schema.TABLES WHERE TABLE_NAME = CONCAT('~external_', store) ORDER BY TABLE_SCHEMA;
  DECLARE CONTINUE HANDLER FOR NOT FOUND SET done = TRUE;
  SET tracked = FALSE, held = '';
  IF filepath IS NULL THEN
    CALL dj_udf.usable_table(schema_name, store, TRUE, t);
    CALL dj_udf.hold_slot(t, h, tracked);
    IF NOT tracked THEN SET held = t; END IF;
  ELSE
    IF NOT (h <=> UNHEX(MD5(filepath))) THEN
      SET msg = LEFT(CONCAT('refused: hash ', HEX(h), ' is not the MD5 of filepath ''', filepath, ''''), 512);
      SIGNAL SQLSTATE 'HY000' SET MESSAGE_TEXT = msg;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM information_schema.USER_PRIVILEGES
                    WHERE GRANTEE = CONCAT('''', SUBSTRING_INDEX(CURRENT_USER(), '@', 1), '''@''',
                                           SUBSTRING_INDEX(CURRENT_USER(), '@', -1), '''')
                      AND PRIVILEGE_TYPE = 'SELECT') THEN
      SET msg = CONCAT('refused: a filepath object is shared by every schema of store ''', store,
                       '''; removing one needs an account that sees them all (SELECT on *.*)');
      SIGNAL SQLSTATE 'HY000' SET MESSAGE_TEXT = msg;
    END IF;
    CALL dj_udf.lock_filepath(store, h);
    OPEN store_tables;
    schema_loop: LOOP
      FETCH store_tables INTO s;
      IF done THEN LEAVE schema_loop; END IF;
      CALL dj_udf.usable_table(s, store, TRUE, t);
      CALL dj_udf.hold_slot(t, h, tracked);
      IF tracked THEN LEAVE schema_loop; END IF;
      SET held = CONCAT(held, IF(held = '', '', '\n'), t);
    END LOOP;
    CLOSE store_tables;
  END IF;
  IF tracked THEN CALL dj_udf.release_slots(held, h); SET held = ''; END IF;
END $$

-- Removes the placeholders dj_udf.hold_slots wrote (before the caller
-- commits: no placeholder is ever committed).
DROP PROCEDURE IF EXISTS dj_udf.release_slots $$
CREATE PROCEDURE dj_udf.release_slots(IN held longtext CHARACTER SET utf8mb4, IN h binary(16))
  SQL SECURITY INVOKER MODIFIES SQL DATA
BEGIN
  WHILE held <> '' DO
    CALL dj_udf.run_sql(CONCAT('DELETE FROM ', SUBSTRING_INDEX(held, '\n', 1), ' WHERE hash = ', dj_udf.bytes_literal(h)));
    SET held = IF(LOCATE('\n', held) = 0, '', SUBSTRING(held, LOCATE('\n', held) + 1));
  END WHILE;
END $$

-- The one place objects are deleted; commits, so it runs outside any
-- transaction. items: a JSON array of {qid, hash, attachment_name,
-- filepath}, the queue entry qid (NULL for none) going with each object.
-- Two kinds of transactions:
--  1. one per object: with the object's slots held (no row names it, and no
--     put on this server can write one meanwhile), its dj_udf.removals row
--     is written and committed: from then on a put on any server of a
--     cluster sees the removal and refuses (dj_udf.check_removals), and one
--     that raced this commit loses the cluster's certification (both wrote
--     the slot). An object tracked again only has its entry taken; one
--     another removal is under way for, or whose entry another purge took
--     meanwhile, is skipped;
--  2. one for the rest: with their slots held again (a put on this server
--     may have tracked one in between), the untracked objects are deleted
--     in one dj_delete_objects call (S3: one DeleteObjects request per
--     1000, up to the store's max_parallel at once), and the removals rows
--     and queue entries go with the same commit.
-- An object whose removal fails keeps its entry, with the error
-- (failures, first_error); so do all of the second transaction's objects
-- when that transaction fails as a whole. A deadlock of the second
-- transaction is a SQL error (1213) after its removals rows are gone: run
-- the batch again. deleted counts the objects that were there.
DROP PROCEDURE IF EXISTS dj_udf.delete_if_untracked $$
DROP PROCEDURE IF EXISTS dj_udf.remove_object $$
DROP PROCEDURE IF EXISTS dj_udf.remove_objects $$
CREATE PROCEDURE dj_udf.remove_objects(IN schema_name varchar(64), IN store varchar(64), IN k varchar(255),
                                       IN items longtext CHARACTER SET utf8mb4,
                                       OUT deleted bigint, OUT failures bigint, OUT first_error varchar(1000) CHARACTER SET utf8mb4)
  SQL SECURITY INVOKER MODIFIES SQL DATA
BEGIN
  DECLARE qid bigint unsigned;
  DECLARE hx char(32);
  DECLARE h binary(16);
  DECLARE nm varchar(255) CHARACTER SET utf8mb4;
  DECLARE fp varchar(1000) CHARACTER SET utf8mb4;
  DECLARE held longtext CHARACTER SET utf8mb4;
  DECLARE st varchar(100);
  DECLARE err varchar(1000) CHARACTER SET utf8mb4;
  DECLARE errno, tries int;
  DECLARE tracked, taken, queued boolean;
  DECLARE taken_rows, doomed, r longtext CHARACTER SET utf8mb4 DEFAULT '[]';
  -- the rows batch_items goes through: items, then taken_rows
  DECLARE batch longtext CHARACTER SET utf8mb4;
  DECLARE done int DEFAULT 0;
  DECLARE batch_items CURSOR FOR
    SELECT j.qid, j.h, j.nm, j.fp FROM JSON_TABLE(batch, '$[*]' COLUMNS (
      qid bigint unsigned PATH '$.qid', h char(32) PATH '$.hash',
      nm varchar(255) CHARACTER SET utf8mb4 PATH '$.attachment_name',
      fp varchar(1000) CHARACTER SET utf8mb4 PATH '$.filepath')) j;
  DECLARE results CURSOR FOR
    SELECT d.qid, d.h, d.fp, d.held, x.st, x.err FROM JSON_TABLE(doomed, '$[*]' COLUMNS (
      i FOR ORDINALITY, qid bigint unsigned PATH '$.qid', h char(32) PATH '$.hash',
      fp varchar(1000) CHARACTER SET utf8mb4 PATH '$.filepath', held longtext CHARACTER SET utf8mb4 PATH '$.held')) d
    JOIN JSON_TABLE(r, '$[*]' COLUMNS (i FOR ORDINALITY, st varchar(100) PATH '$.status',
                                       err varchar(1000) CHARACTER SET utf8mb4 PATH '$.error')) x ON x.i = d.i
    ORDER BY d.i;
  DECLARE CONTINUE HANDLER FOR NOT FOUND SET done = 1;
  SET deleted = 0, failures = 0, first_error = NULL;
  SET batch = items;
  OPEN batch_items;
  item_loop: LOOP
    FETCH batch_items INTO qid, hx, nm, fp;
    IF done THEN LEAVE item_loop; END IF;
    SET h = UNHEX(hx), tries = 0;
    attempt: LOOP
      SET errno = 0, taken = FALSE, tracked = FALSE;
      BEGIN
        DECLARE EXIT HANDLER FOR SQLEXCEPTION
        BEGIN
          GET DIAGNOSTICS CONDITION 1 errno = MYSQL_ERRNO, err = MESSAGE_TEXT;
          ROLLBACK;
        END;
        START TRANSACTION;
        CALL dj_udf.hold_slots(schema_name, store, h, fp, tracked, held);
        SET queued = TRUE;
        IF qid IS NOT NULL THEN CALL dj_udf.entry_queued(k, qid, queued); END IF;
        IF NOT queued THEN
          CALL dj_udf.release_slots(held, h);
        ELSEIF NOT tracked THEN
          CALL dj_udf.begin_removal(k, store, IF(fp IS NULL, schema_name, ''), h, taken);
          CALL dj_udf.release_slots(held, h);
        ELSEIF qid IS NOT NULL THEN
          CALL dj_udf.take_entry(k, qid);
        END IF;
        COMMIT;
      END;
      IF errno <> 1213 OR tries >= 20 THEN LEAVE attempt; END IF;
      SET tries = tries + 1;
    END LOOP;
    IF errno <> 0 THEN
      IF qid IS NOT NULL THEN
        START TRANSACTION;
        CALL dj_udf.record_failure(k, qid, err);
        COMMIT;
      END IF;
      SET failures = failures + 1, first_error = COALESCE(first_error, err);
    ELSEIF taken THEN
      SET taken_rows = JSON_ARRAY_APPEND(taken_rows, '$', JSON_OBJECT('qid', qid, 'hash', hx, 'attachment_name', nm, 'filepath', fp));
    END IF;
  END LOOP;
  CLOSE batch_items;
  IF JSON_LENGTH(taken_rows) > 0 THEN
    BEGIN
      DECLARE EXIT HANDLER FOR SQLEXCEPTION
      BEGIN
        GET DIAGNOSTICS CONDITION 1 errno = MYSQL_ERRNO, err = MESSAGE_TEXT;
        ROLLBACK;
        START TRANSACTION;
        CALL dj_udf.end_removals(k, store, schema_name, taken_rows);
        IF errno <> 1213 THEN CALL dj_udf.record_failures(k, taken_rows, err); END IF;
        COMMIT;
        IF errno = 1213 THEN RESIGNAL; END IF;
        SET failures = failures + JSON_LENGTH(taken_rows), first_error = COALESCE(first_error, err);
      END;
      SET done = 0;
      START TRANSACTION;
      SET batch = taken_rows;
      OPEN batch_items;
      taken_loop: LOOP
        FETCH batch_items INTO qid, hx, nm, fp;
        IF done THEN LEAVE taken_loop; END IF;
        SET h = UNHEX(hx);
        CALL dj_udf.hold_slots(schema_name, store, h, fp, tracked, held);
        IF NOT tracked THEN
          SET doomed = JSON_ARRAY_APPEND(doomed, '$', JSON_OBJECT('qid', qid, 'hash', hx, 'attachment_name', nm,
                                                                 'filepath', fp, 'held', held));
        ELSEIF qid IS NOT NULL THEN
          CALL dj_udf.take_entry(k, qid);
        END IF;
      END LOOP;
      CLOSE batch_items;
      IF JSON_LENGTH(doomed) > 0 THEN
        SET r = CONVERT(dj_delete_objects(store, schema_name, doomed, k) USING utf8mb4);
        IF r IS NULL THEN CALL dj_udf.fail('dj_delete_objects'); END IF;
        SET done = 0;
        OPEN results;
        result_loop: LOOP
          FETCH results INTO qid, hx, fp, held, st, err;
          IF done THEN LEAVE result_loop; END IF;
          SET h = UNHEX(hx);
          CALL dj_udf.release_slots(held, h);
          IF err IS NULL THEN
            IF fp IS NOT NULL THEN CALL dj_udf.release_filepath(store, h); END IF;
            IF qid IS NOT NULL THEN CALL dj_udf.take_entry(k, qid); END IF;
            IF st = 'deleted' THEN SET deleted = deleted + 1; END IF;
          ELSE
            SET err = LEFT(CONCAT('dj_delete_objects: ', err), 1000);
            IF qid IS NOT NULL THEN CALL dj_udf.record_failure(k, qid, err); END IF;
            SET failures = failures + 1, first_error = COALESCE(first_error, err);
          END IF;
        END LOOP;
        CLOSE results;
      END IF;
      CALL dj_udf.end_removals(k, store, schema_name, taken_rows);
      COMMIT;
    END;
  END IF;
END $$

-- Removes the queued objects of one schema and store, 100 entries at a
-- time with dj_udf.remove_objects, which also takes their entries out of
-- the queue. A failure leaves the entry queued with its error for a later
-- run and counts in failures; an object another purge is removing now is
-- skipped, not counted; a deadlock is retried.
DROP PROCEDURE IF EXISTS dj_udf.purge $$
CREATE PROCEDURE dj_udf.purge(IN schema_name varchar(64), IN store varchar(64), OUT objects_deleted bigint, OUT failures bigint)
  SQL SECURITY INVOKER MODIFIES SQL DATA
BEGIN
  DECLARE t varchar(200) CHARACTER SET utf8mb4;
  DECLARE k varchar(255);
  DECLARE last_id, batch_last bigint unsigned DEFAULT 0;
  DECLARE items longtext CHARACTER SET utf8mb4;
  DECLARE d, f bigint;
  DECLARE e varchar(1000) CHARACTER SET utf8mb4;
  DECLARE deadlocked boolean;
  DECLARE deadlocks int DEFAULT 0;
  DECLARE EXIT HANDLER FOR SQLEXCEPTION
  BEGIN
    ROLLBACK;
    RESIGNAL;
  END;
  CALL dj_udf.usable_table(schema_name, store, TRUE, t);
  CALL dj_udf.purge_key_for('dj_udf.purge', k);
  SET objects_deleted = 0, failures = 0;
  purge_loop: LOOP
    CALL dj_udf.claim_batch(k, schema_name, store, last_id, 100, items, batch_last);
    IF items IS NULL THEN LEAVE purge_loop; END IF;
    SET deadlocked = FALSE;
    BEGIN
      DECLARE EXIT HANDLER FOR 1213 SET deadlocked = TRUE;
      CALL dj_udf.remove_objects(schema_name, store, k, items, d, f, e);
    END;
    IF NOT deadlocked THEN
      SET objects_deleted = objects_deleted + d, failures = failures + f, last_id = batch_last, deadlocks = 0;
    ELSEIF deadlocks < 20 THEN
      -- the same entries again
      SET deadlocks = deadlocks + 1;
    ELSE
      SIGNAL SQLSTATE '40001' SET MESSAGE_TEXT = 'dj_udf.purge: deadlocked 20 times in a row; run it again', MYSQL_ERRNO = 1213;
    END IF;
  END LOOP;
END $$

-- Removes objects of one schema that no tracking row names and that are at
-- least min_age_seconds old: what a rolled-back or failed insert left behind
-- (objects are written before the transaction that tracks them commits).
-- The objects of each page of the listing are removed by
-- dj_udf.remove_objects, as in purge; the first failure ends the sweep
-- with its error (what was removed before stays removed). Files that are
-- not DataJoint objects of this store are never touched.
-- Filepath objects are not swept (their keys are not per schema).
DROP PROCEDURE IF EXISTS dj_udf.sweep $$
CREATE PROCEDURE dj_udf.sweep(IN schema_name varchar(64), IN store varchar(64), IN min_age_seconds bigint unsigned,
                              OUT orphans_deleted bigint)
  SQL SECURITY INVOKER MODIFIES SQL DATA
BEGIN
  DECLARE t varchar(200) CHARACTER SET utf8mb4;
  DECLARE k varchar(255);
  DECLARE after_key varchar(4096) CHARACTER SET utf8mb4 DEFAULT '';
  DECLARE page, items longtext CHARACTER SET utf8mb4;
  DECLARE ih char(32);
  DECLARE inm varchar(255) CHARACTER SET utf8mb4;
  DECLARE d, f bigint;
  DECLARE e varchar(1000) CHARACTER SET utf8mb4;
  DECLARE msg varchar(512) CHARACTER SET utf8mb4;
  DECLARE done int DEFAULT 0;
  DECLARE orphans CURSOR FOR
    SELECT jt.h, jt.nm FROM JSON_TABLE(page, '$[*]' COLUMNS (
      h char(32) PATH '$.hash',
      nm varchar(255) CHARACTER SET utf8mb4 PATH '$.attachment_name',
      age bigint unsigned PATH '$.age')) AS jt
     WHERE jt.h IS NOT NULL AND jt.age >= min_age_seconds;
  DECLARE CONTINUE HANDLER FOR NOT FOUND SET done = 1;
  DECLARE EXIT HANDLER FOR SQLEXCEPTION
  BEGIN
    ROLLBACK;
    RESIGNAL;
  END;
  CALL dj_udf.usable_table(schema_name, store, TRUE, t);
  CALL dj_udf.purge_key_for('dj_udf.sweep', k);
  SET orphans_deleted = 0;
  sweep_loop: LOOP
    SET page = CONVERT(dj_list_objects(store, schema_name, after_key, 500, k) USING utf8mb4);
    IF page IS NULL THEN CALL dj_udf.fail('dj_udf.sweep'); END IF;
    IF JSON_LENGTH(page) = 0 THEN LEAVE sweep_loop; END IF;
    SET after_key = JSON_UNQUOTE(JSON_EXTRACT(page, CONCAT('$[', JSON_LENGTH(page) - 1, '].key')));
    -- the page's orphans old enough, built row by row (JSON_ARRAYAGG would
    -- be cut at the session's group_concat_max_len)
    SET items = NULL, done = 0;
    OPEN orphans;
    orphan_loop: LOOP
      FETCH orphans INTO ih, inm;
      IF done THEN LEAVE orphan_loop; END IF;
      SET items = JSON_ARRAY_APPEND(COALESCE(items, '[]'), '$',
                                    JSON_OBJECT('qid', NULL, 'hash', ih, 'attachment_name', inm, 'filepath', NULL));
    END LOOP;
    CLOSE orphans;
    IF items IS NOT NULL THEN
      CALL dj_udf.remove_objects(schema_name, store, k, items, d, f, e);
      SET orphans_deleted = orphans_deleted + d;
      IF f > 0 THEN
        SET msg = LEFT(CONCAT('dj_udf.sweep: ', e), 512);
        SIGNAL SQLSTATE 'HY000' SET MESSAGE_TEXT = msg;
      END IF;
    END IF;
  END LOOP;
END $$

-- Removes what interrupted writes left in one store and nobody is writing
-- any more (a server killed during a put, say): this library's temporary
-- files in the store and its stage, and unfinished S3 multipart uploads,
-- untouched for at least min_age_seconds. Needs the purge key, as sweep does.
DROP PROCEDURE IF EXISTS dj_udf.sweep_leftovers $$
CREATE PROCEDURE dj_udf.sweep_leftovers(IN store varchar(64), IN min_age_seconds bigint unsigned,
                                        OUT files_removed bigint, OUT uploads_aborted bigint)
  SQL SECURITY INVOKER READS SQL DATA
BEGIN
  DECLARE k varchar(255);
  DECLARE r text CHARACTER SET utf8mb4;
  CALL dj_udf.purge_key_for('dj_udf.sweep_leftovers', k);
  SET r = CONVERT(dj_sweep_leftovers(store, min_age_seconds, k) USING utf8mb4);
  IF r IS NULL THEN CALL dj_udf.fail('dj_udf.sweep_leftovers'); END IF;
  SET files_removed = JSON_EXTRACT(r, '$.temporary_files'), uploads_aborted = JSON_EXTRACT(r, '$.uploads_aborted');
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

-- Tracks the objects a batch put stored, as dj_udf.track does for one: r is
-- the put's result, a JSON array of {hash, size, attachment_name} (and
-- {…, error} for an object that failed, which is left out). Returns in gone
-- the hashes (a JSON array; NULL for none) of objects that a purge removed
-- between their upload and their row: with the rows in, none can be removed
-- any more, so the caller uploads those again.
DROP PROCEDURE IF EXISTS dj_udf.track_many $$
CREATE PROCEDURE dj_udf.track_many(IN t varchar(200) CHARACTER SET utf8mb4, IN schema_name varchar(64), IN store varchar(64),
                                   IN r longtext CHARACTER SET utf8mb4, OUT gone longtext CHARACTER SET utf8mb4)
  SQL SECURITY INVOKER MODIFIES SQL DATA
BEGIN
  DECLARE stored_rows, stored, sizes longtext CHARACTER SET utf8mb4;
  DECLARE saved bigint unsigned DEFAULT @@SESSION.group_concat_max_len;
  DECLARE EXIT HANDLER FOR SQLEXCEPTION
  BEGIN
    SET SESSION group_concat_max_len = saved;
    RESIGNAL;
  END;
  SET gone = NULL;
  -- the rows as literals of one multi-row INSERT ... VALUES (up to 10 000
  -- rows of at most 2 kB each): an INSERT ... SELECT ... ON DUPLICATE KEY
  -- UPDATE is unsafe to log as a statement, one with VALUES is not
  SET SESSION group_concat_max_len = GREATEST(saved, 64 << 20);
  SELECT GROUP_CONCAT(CONCAT('(', dj_udf.bytes_literal(UNHEX(j.hash)), ', ', j.size, ', ',
                             dj_udf.text_literal(j.attachment_name), ')') SEPARATOR ', '),
         JSON_ARRAYAGG(JSON_OBJECT('hash', j.hash, 'attachment_name', j.attachment_name))
    INTO stored_rows, stored
    FROM JSON_TABLE(r, '$[*]' COLUMNS (hash char(32) PATH '$.hash', size bigint unsigned PATH '$.size',
                                       attachment_name varchar(255) CHARACTER SET utf8mb4 PATH '$.attachment_name')) j
   WHERE j.hash IS NOT NULL;
  IF stored IS NOT NULL THEN
    CALL dj_udf.check_removals(store, schema_name, JSON_EXTRACT(stored, '$[*].hash'));
    CALL dj_udf.run_sql(CONCAT('INSERT INTO ', t, ' (hash, size, attachment_name) VALUES ', stored_rows,
                               ' ON DUPLICATE KEY UPDATE timestamp = CURRENT_TIMESTAMP'));
    SET sizes = CONVERT(dj_object_sizes(store, schema_name, stored) USING utf8mb4);
    IF sizes IS NULL THEN CALL dj_udf.fail('dj_udf.track_many'); END IF;
    SELECT JSON_ARRAYAGG(z.hash) INTO gone
      FROM JSON_TABLE(sizes, '$[*]' COLUMNS (hash char(32) PATH '$.hash', size bigint PATH '$.size')) z
     WHERE z.size IS NULL;
  END IF;
  SET SESSION group_concat_max_len = saved;
END $$

-- attach@store for many files on the database server in one call: every
-- regular file of a server folder (not its subfolders), or a JSON array of
-- server paths. Uploads up to the store's max_parallel files at once,
-- tracks each one stored (dj_udf.track_many), and returns in `files` a
-- JSON array with one item per file, in order: {path, attachment_name,
-- hash (32 hex digits), size}, or {path, error} for a file that failed and
-- is not tracked. Ready to insert:
--   INSERT INTO t (id, f) SELECT j.n, UNHEX(j.hash) FROM JSON_TABLE(@files, '$[*]'
--     COLUMNS (n FOR ORDINALITY, hash char(32) PATH '$.hash')) j WHERE j.hash IS NOT NULL;
DROP PROCEDURE IF EXISTS dj_udf.attach_put_files $$
CREATE PROCEDURE dj_udf.attach_put_files(IN store varchar(64), IN schema_name varchar(64), IN server_paths longtext CHARACTER SET utf8mb4,
                                         OUT files longtext CHARACTER SET utf8mb4)
  SQL SECURITY INVOKER MODIFIES SQL DATA
BEGIN
  DECLARE t varchar(200) CHARACTER SET utf8mb4;
  DECLARE r, gone longtext CHARACTER SET utf8mb4;
  DECLARE gone_path varchar(4096) CHARACTER SET utf8mb4;
  DECLARE done int DEFAULT 0;
  DECLARE again CURSOR FOR
    SELECT f.path FROM JSON_TABLE(r, '$[*]' COLUMNS (path varchar(4096) CHARACTER SET utf8mb4 PATH '$.path',
                                                     hash char(32) PATH '$.hash')) f
      JOIN JSON_TABLE(gone, '$[*]' COLUMNS (hash char(32) PATH '$')) g ON g.hash = f.hash;
  DECLARE CONTINUE HANDLER FOR NOT FOUND SET done = 1;
  CALL dj_udf.usable_table(schema_name, store, FALSE, t);
  SET r = CONVERT(dj_attach_put_files(store, schema_name, server_paths) USING utf8mb4);
  IF r IS NULL THEN CALL dj_udf.fail('dj_udf.attach_put_files'); END IF;
  CALL dj_udf.track_many(t, schema_name, store, r, gone);
  IF gone IS NOT NULL THEN
    OPEN again;
    again_loop: LOOP
      FETCH again INTO gone_path;
      IF done THEN LEAVE again_loop; END IF;
      IF dj_attach_put_file(store, schema_name, gone_path) IS NULL THEN CALL dj_udf.fail('dj_udf.attach_put_files'); END IF;
    END LOOP;
    CLOSE again;
  END IF;
  SET files = r;
END $$

-- After a batch put was tracked (dj_udf.track_many) and the same batch put
-- again because some of its objects were gone: fails, naming the first,
-- if one of those objects failed the second time (its row is in, its
-- object is not). r and again are the two results, item for item; gone
-- holds the hashes that were put again.
DROP PROCEDURE IF EXISTS dj_udf.check_put_again $$
CREATE PROCEDURE dj_udf.check_put_again(IN what varchar(64), IN r longtext CHARACTER SET utf8mb4,
                                        IN again longtext CHARACTER SET utf8mb4, IN gone longtext CHARACTER SET utf8mb4)
  SQL SECURITY INVOKER CONTAINS SQL
BEGIN
  DECLARE msg varchar(512) CHARACTER SET utf8mb4;
  IF again IS NULL THEN CALL dj_udf.fail(what); END IF;
  SELECT MIN(b.err) INTO msg
    FROM JSON_TABLE(r, '$[*]' COLUMNS (n FOR ORDINALITY, hash char(32) PATH '$.hash')) a
    JOIN JSON_TABLE(again, '$[*]' COLUMNS (n FOR ORDINALITY, err varchar(500) CHARACTER SET utf8mb4 PATH '$.error')) b ON b.n = a.n
    JOIN JSON_TABLE(gone, '$[*]' COLUMNS (hash char(32) PATH '$')) g ON g.hash = a.hash
   WHERE b.err IS NOT NULL;
  IF msg IS NOT NULL THEN
    SET msg = LEFT(CONCAT(what, ': ', msg), 512);
    SIGNAL SQLSTATE 'HY000' SET MESSAGE_TEXT = msg;
  END IF;
END $$

-- attach@store for many attachments sent by the client in one statement:
-- `items`, a JSON array of {attachment_name, size}, divides `data`, their
-- bytes one after the other. Stores up to the store's max_parallel at
-- once, tracks each one stored (dj_udf.track_many), and returns in
-- `objects` one item per attachment, in order: {attachment_name, hash (32
-- hex digits), size}, or {attachment_name, error} for one that failed and
-- is not tracked. Each object is durable when the call returns, as with
-- dj_udf.attach_put. Ready to insert:
--   INSERT INTO t (id, f) SELECT j.n, UNHEX(j.hash) FROM JSON_TABLE(@objects, '$[*]'
--     COLUMNS (n FOR ORDINALITY, hash char(32) PATH '$.hash')) j WHERE j.hash IS NOT NULL;
-- If a purge removed some of the objects between their upload and their
-- rows, the same batch goes again: it writes only what is missing.
DROP PROCEDURE IF EXISTS dj_udf.attach_put_many $$
CREATE PROCEDURE dj_udf.attach_put_many(IN store varchar(64), IN schema_name varchar(64), IN items longtext CHARACTER SET utf8mb4,
                                        IN data longblob, OUT objects longtext CHARACTER SET utf8mb4)
  SQL SECURITY INVOKER MODIFIES SQL DATA
BEGIN
  DECLARE t varchar(200) CHARACTER SET utf8mb4;
  DECLARE r, gone longtext CHARACTER SET utf8mb4;
  CALL dj_udf.usable_table(schema_name, store, FALSE, t);
  SET r = CONVERT(dj_attach_put_many(store, schema_name, items, IF(RAND() >= 0, data, NULL)) USING utf8mb4);
  IF r IS NULL THEN CALL dj_udf.fail('dj_udf.attach_put_many'); END IF;
  CALL dj_udf.track_many(t, schema_name, store, r, gone);
  IF gone IS NOT NULL THEN
    CALL dj_udf.check_put_again('dj_udf.attach_put_many', r,
      CONVERT(dj_attach_put_many(store, schema_name, items, IF(RAND() >= 0, data, NULL)) USING utf8mb4), gone);
  END IF;
  SET objects = r;
END $$

-- blob@store for many serialized blobs sent by the client in one
-- statement: `items`, a JSON array of {size}, divides `data`, as for
-- dj_udf.attach_put_many; `objects` holds {hash, size} or {error} per blob.
-- The body mirrors dj_udf.attach_put_many's instead of sharing a procedure
-- with it: passing `data` on in a CALL would copy the whole batch again.
DROP PROCEDURE IF EXISTS dj_udf.blob_put_many $$
CREATE PROCEDURE dj_udf.blob_put_many(IN store varchar(64), IN schema_name varchar(64), IN items longtext CHARACTER SET utf8mb4,
                                      IN data longblob, OUT objects longtext CHARACTER SET utf8mb4)
  SQL SECURITY INVOKER MODIFIES SQL DATA
BEGIN
  DECLARE t varchar(200) CHARACTER SET utf8mb4;
  DECLARE r, gone longtext CHARACTER SET utf8mb4;
  CALL dj_udf.usable_table(schema_name, store, FALSE, t);
  SET r = CONVERT(dj_blob_put_many(store, schema_name, items, IF(RAND() >= 0, data, NULL)) USING utf8mb4);
  IF r IS NULL THEN CALL dj_udf.fail('dj_udf.blob_put_many'); END IF;
  CALL dj_udf.track_many(t, schema_name, store, r, gone);
  IF gone IS NOT NULL THEN
    CALL dj_udf.check_put_again('dj_udf.blob_put_many', r,
      CONVERT(dj_blob_put_many(store, schema_name, items, IF(RAND() >= 0, data, NULL)) USING utf8mb4), gone);
  END IF;
  SET objects = r;
END $$

-- Writes verified copies of the attachments that a column of a user table
-- references into a server folder (one of export_dirs), up to the store's
-- max_parallel at once, by DataJoint's naming rule (an existing different
-- file is never replaced). One result row per distinct attachment, in hash
-- order: hash, attachment_name, path, and error for one that failed.
DROP PROCEDURE IF EXISTS dj_udf.export_attachments $$
CREATE PROCEDURE dj_udf.export_attachments(IN store varchar(64), IN schema_name varchar(64), IN table_name varchar(64),
                                           IN column_name varchar(64), IN server_dir varchar(4096) CHARACTER SET utf8mb4)
  SQL SECURITY INVOKER READS SQL DATA
BEGIN
  DECLARE t varchar(200) CHARACTER SET utf8mb4;
  CALL dj_udf.usable_table(schema_name, store, TRUE, t);
  CALL dj_udf.run_paged(CONCAT(
    'SELECT v.hash, v.attachment_name, v.path, v.error FROM ',
    dj_udf.pages(CONCAT('SELECT DISTINCT x.hash, JSON_OBJECT(''hash'', HEX(x.hash), ''attachment_name'', x.attachment_name) AS item FROM ',
                        dj_udf.column_ref(schema_name, table_name), ' u JOIN ', t, ' x ON x.hash = u.', dj_udf.quoted(column_name))),
    ', JSON_TABLE(CONVERT(dj_attach_export_many(', dj_udf.text_literal(store), ', ', dj_udf.text_literal(schema_name), ', p.items, ',
    dj_udf.text_literal(server_dir), ') USING utf8mb4), ''$[*]'' COLUMNS (i FOR ORDINALITY, hash char(32) PATH ''$.hash'', ',
    'attachment_name varchar(255) CHARACTER SET utf8mb4 PATH ''$.attachment_name'', ',
    'path varchar(4096) CHARACTER SET utf8mb4 PATH ''$.path'', error varchar(8192) CHARACTER SET utf8mb4 PATH ''$.error'')) v ',
    'ORDER BY p.page, v.i'));
END $$

-- Makes stage/<filepath> a checked copy of every filepath object that a
-- column of a user table references, up to the store's max_parallel at
-- once. One result row per distinct filepath, in hash order: filepath,
-- path, and error for one that failed.
DROP PROCEDURE IF EXISTS dj_udf.sync_filepaths $$
CREATE PROCEDURE dj_udf.sync_filepaths(IN store varchar(64), IN schema_name varchar(64), IN table_name varchar(64),
                                       IN column_name varchar(64))
  SQL SECURITY INVOKER READS SQL DATA
BEGIN
  DECLARE t varchar(200) CHARACTER SET utf8mb4;
  CALL dj_udf.usable_table(schema_name, store, TRUE, t);
  CALL dj_udf.run_paged(CONCAT(
    'SELECT v.filepath, v.path, v.error FROM ',
    dj_udf.pages(CONCAT('SELECT DISTINCT x.hash, JSON_OBJECT(''filepath'', x.filepath, ''contents_hash'', HEX(x.contents_hash), ',
                        '''size'', x.size) AS item FROM ', dj_udf.column_ref(schema_name, table_name), ' u JOIN ', t,
                        ' x ON x.hash = u.', dj_udf.quoted(column_name))),
    ', JSON_TABLE(CONVERT(dj_filepath_get_many(', dj_udf.text_literal(store), ', p.items) USING utf8mb4), ',
    '''$[*]'' COLUMNS (i FOR ORDINALITY, filepath varchar(1000) CHARACTER SET utf8mb4 PATH ''$.filepath'', ',
    'path varchar(4096) CHARACTER SET utf8mb4 PATH ''$.path'', error varchar(8192) CHARACTER SET utf8mb4 PATH ''$.error'')) v ',
    'ORDER BY p.page, v.i'));
END $$

DELIMITER ;

-- ---------------------------------------------------------------------------
-- Objects of any size from any client: chunked uploads and ranged reads
-- (README, "Objects of any size"). Their loadable functions are dropped
-- and created with all the others above: a new library file is loaded only
-- once no function of the old one is left.
-- ---------------------------------------------------------------------------
DELIMITER $$

-- Opens a chunked upload of an attachment (attachment_name NULL: a blob)
-- into a store and schema whose tracking table exists. Every part has
-- part_size bytes but the last. The id belongs to the calling account.
DROP PROCEDURE IF EXISTS dj_udf.upload_open $$
CREATE PROCEDURE dj_udf.upload_open(IN store varchar(64), IN schema_name varchar(64), IN attachment_name varchar(255),
                                    IN part_size bigint unsigned, OUT upload_id varchar(64))
  SQL SECURITY INVOKER READS SQL DATA
BEGIN
  DECLARE t varchar(200) CHARACTER SET utf8mb4;
  DECLARE id varchar(64);
  CALL dj_udf.usable_table(schema_name, store, FALSE, t);
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
  SET m = CONVERT(dj_upload_part(upload_id, CURRENT_USER(), part_number, IF(RAND() >= 0, data, NULL)) USING ascii);
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
  DECLARE t varchar(200) CHARACTER SET utf8mb4;
  DECLARE sc, st varchar(64) CHARACTER SET utf8mb4;
  DECLARE h binary(16);
  DECLARE nm varchar(255) CHARACTER SET utf8mb4;
  DECLARE gone boolean;
  DECLARE msg varchar(512);
  SET r = CONVERT(dj_upload_finish(upload_id, CURRENT_USER(), parts, part_md5s, expected_hash) USING utf8mb4);
  IF r IS NULL THEN CALL dj_udf.fail('dj_udf.upload_finish'); END IF;
  SET h = UNHEX(JSON_UNQUOTE(JSON_EXTRACT(r, '$.hash')));
  SET sc = JSON_UNQUOTE(JSON_EXTRACT(r, '$.schema')), st = JSON_UNQUOTE(JSON_EXTRACT(r, '$.store'));
  SET nm = IF(JSON_TYPE(JSON_EXTRACT(r, '$.attachment_name')) = 'NULL', NULL, JSON_UNQUOTE(JSON_EXTRACT(r, '$.attachment_name')));
  CALL dj_udf.usable_table(sc, st, FALSE, t);
  CALL dj_udf.track(t, sc, st, h, JSON_EXTRACT(r, '$.size'), nm, NULL, NULL, gone);
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
  DECLARE t varchar(200) CHARACTER SET utf8mb4;
  DECLARE h binary(16) DEFAULT IF(LENGTH(hash) = 16, hash, UNHEX(REPLACE(hash, '-', '')));
  DECLARE r longblob;
  DECLARE row_json longtext CHARACTER SET utf8mb4;
  DECLARE sz bigint unsigned;
  DECLARE nm varchar(255) CHARACTER SET utf8mb4;
  DECLARE fp varchar(1000) CHARACTER SET utf8mb4;
  DECLARE ch binary(16);
  DECLARE msg varchar(512);
  CALL dj_udf.usable_table(schema_name, store, FALSE, t);
  CALL dj_udf.query_value(CONCAT('SELECT JSON_OBJECT(''size'', size, ''name'', attachment_name, ''filepath'', filepath, ',
    '''contents_hash'', HEX(contents_hash)) FROM ', t, ' WHERE hash = ', dj_udf.bytes_literal(h)), r);
  IF r IS NULL THEN
    SET msg = LEFT(CONCAT('dj_udf.read_range: ', t, ' has no row for hash ', COALESCE(HEX(h), 'NULL')), 512);
    SIGNAL SQLSTATE 'HY000' SET MESSAGE_TEXT = msg;
  END IF;
  SET row_json = CONVERT(r USING utf8mb4);
  SET sz = JSON_EXTRACT(row_json, '$.size');
  SET nm = IF(JSON_TYPE(JSON_EXTRACT(row_json, '$.name')) = 'NULL', NULL, JSON_UNQUOTE(JSON_EXTRACT(row_json, '$.name')));
  SET fp = IF(JSON_TYPE(JSON_EXTRACT(row_json, '$.filepath')) = 'NULL', NULL, JSON_UNQUOTE(JSON_EXTRACT(row_json, '$.filepath')));
  SET ch = IF(JSON_TYPE(JSON_EXTRACT(row_json, '$.contents_hash')) = 'NULL', NULL, UNHEX(JSON_UNQUOTE(JSON_EXTRACT(row_json, '$.contents_hash'))));
  SELECT sz AS size, dj_read_range(store, schema_name, h, sz, nm, fp, ch, start_at, byte_count) AS data;
  IF dj_last_error() IS NOT NULL THEN CALL dj_udf.fail('dj_udf.read_range'); END IF;
END $$

DELIMITER ;

-- ---------------------------------------------------------------------------
-- Monitoring (README, "Monitoring"): what the stores are doing, as views.
-- Any account can call a loadable function, and these name other accounts'
-- objects and connections, so the functions answer only with the purge key.
-- The views run with the installer's rights (SQL SECURITY DEFINER) and read
-- the key themselves: SELECT on a view is the privilege to see it
-- (GRANT SELECT ON dj_udf.transfers TO monitor), and no account needs to
-- read the key for it. Without a key in dj_udf.purge_key (or with a wrong
-- one) the views are empty. Each view reads its function's JSON through a
-- scalar subquery, which the server evaluates once and keeps: JSON_TABLE
-- over the function itself evaluates it again when the rows are sorted or
-- joined, and reads a later (other) answer for part of them. The counters are the server's since the library
-- was loaded (or reset), not the cluster's: each node counts its own.
-- ---------------------------------------------------------------------------

-- One row per store: objects and bytes put, read, verified, exported and
-- deleted; failures by kind; S3 requests by method and answer, and retries.
CREATE OR REPLACE SQL SECURITY DEFINER VIEW dj_udf.store_stats AS
SELECT s.store, s.objects_put, s.bytes_put, s.objects_read, s.bytes_read, s.objects_verified, s.bytes_verified,
       s.objects_exported, s.bytes_exported, s.objects_deleted,
       s.errors_missing, s.errors_mismatch, s.errors_refused_path, s.errors_timeout, s.errors_unreachable,
       s.errors_s3_4xx, s.errors_s3_5xx, s.errors_denied, s.errors_killed, s.errors_other,
       s.retries, s.s3_head, s.s3_get, s.s3_put, s.s3_post, s.s3_delete,
       s.s3_answers_ok, s.s3_answers_4xx, s.s3_answers_5xx, s.s3_no_answer,
       FROM_UNIXTIME(s.since) AS counting_since, FROM_UNIXTIME(s.reset_at) AS reset_at
  FROM JSON_TABLE((SELECT CONVERT(dj_store_stats(MIN(purge_key)) USING utf8mb4) FROM dj_udf.purge_key), '$' COLUMNS (
       since bigint unsigned PATH '$.since', reset_at bigint unsigned PATH '$.reset_at',
       NESTED PATH '$.stores[*]' COLUMNS (
         store varchar(64) CHARACTER SET utf8mb4 PATH '$.store',
         objects_put bigint unsigned PATH '$.objects_put', bytes_put bigint unsigned PATH '$.bytes_put',
         objects_read bigint unsigned PATH '$.objects_read', bytes_read bigint unsigned PATH '$.bytes_read',
         objects_verified bigint unsigned PATH '$.objects_verify', bytes_verified bigint unsigned PATH '$.bytes_verify',
         objects_exported bigint unsigned PATH '$.objects_export', bytes_exported bigint unsigned PATH '$.bytes_export',
         objects_deleted bigint unsigned PATH '$.objects_delete',
         errors_missing bigint unsigned PATH '$.errors_missing', errors_mismatch bigint unsigned PATH '$.errors_mismatch',
         errors_refused_path bigint unsigned PATH '$.errors_refused_path', errors_timeout bigint unsigned PATH '$.errors_timeout',
         errors_unreachable bigint unsigned PATH '$.errors_unreachable', errors_s3_4xx bigint unsigned PATH '$.errors_s3_4xx',
         errors_s3_5xx bigint unsigned PATH '$.errors_s3_5xx', errors_denied bigint unsigned PATH '$.errors_denied',
         errors_killed bigint unsigned PATH '$.errors_killed', errors_other bigint unsigned PATH '$.errors_other',
         retries bigint unsigned PATH '$.retries',
         s3_head bigint unsigned PATH '$.s3_head', s3_get bigint unsigned PATH '$.s3_get', s3_put bigint unsigned PATH '$.s3_put',
         s3_post bigint unsigned PATH '$.s3_post', s3_delete bigint unsigned PATH '$.s3_delete',
         s3_answers_ok bigint unsigned PATH '$.s3_answers_ok', s3_answers_4xx bigint unsigned PATH '$.s3_answers_4xx',
         s3_answers_5xx bigint unsigned PATH '$.s3_answers_5xx', s3_no_answer bigint unsigned PATH '$.s3_answers_no_answer'))) s
 WHERE s.store IS NOT NULL;

-- Latency per store and operation (put, read, verify, export, delete): how
-- many were timed and the 50th, 95th and 99th percentiles in milliseconds
-- (upper bounds of log-scale buckets, at most 19% above the true value;
-- NULL before the first).
CREATE OR REPLACE SQL SECURITY DEFINER VIEW dj_udf.store_latency AS
SELECT l.store, l.op, l.timed, l.p50_ms, l.p95_ms, l.p99_ms
  FROM JSON_TABLE((SELECT CONVERT(dj_store_stats(MIN(purge_key)) USING utf8mb4) FROM dj_udf.purge_key), '$.stores[*]' COLUMNS (
       store varchar(64) CHARACTER SET utf8mb4 PATH '$.store',
       NESTED PATH '$.latency[*]' COLUMNS (
         op varchar(16) CHARACTER SET utf8mb4 PATH '$.op', timed bigint unsigned PATH '$.count',
         p50_ms double PATH '$.p50_ms', p95_ms double PATH '$.p95_ms', p99_ms double PATH '$.p99_ms'))) l;

-- One row per call moving an object's bytes now, on this server: its
-- connection (CONNECTION_ID(); NULL where the server does not say), SQL
-- function, operation, store and object key (a put of a server file shows
-- its schema folder until it is hashed), bytes done and in all (NULL when
-- not known in advance), start, seconds so far and rate. A transfer leaves
-- the list when its call ends, however it ends. transfers_unlisted in
-- dj_store_stats() counts transfers that found the list (256) full.
CREATE OR REPLACE SQL SECURITY DEFINER VIEW dj_udf.transfers AS
SELECT t.connection_id, t.function_name, t.op, t.store, t.object_key, t.bytes_done, t.bytes_total,
       FROM_UNIXTIME(t.started) AS started, t.seconds, t.bytes_per_second
  FROM JSON_TABLE((SELECT CONVERT(dj_transfers(MIN(purge_key)) USING utf8mb4) FROM dj_udf.purge_key), '$[*]' COLUMNS (
       connection_id bigint unsigned PATH '$.connection_id',
       function_name varchar(64) CHARACTER SET utf8mb4 PATH '$.function',
       op varchar(16) CHARACTER SET utf8mb4 PATH '$.op',
       store varchar(64) CHARACTER SET utf8mb4 PATH '$.store',
       object_key varchar(1200) CHARACTER SET utf8mb4 PATH '$.object_key',
       bytes_done bigint unsigned PATH '$.bytes_done', bytes_total bigint unsigned PATH '$.bytes_total',
       started double PATH '$.started', seconds double PATH '$.seconds',
       bytes_per_second double PATH '$.bytes_per_second')) t;

-- One row per configured store, checked now (up to 8 at once): healthy
-- when its folder or S3 server answers, its credentials are accepted and a
-- small probe object (under .dj-health/ in its location) is written, read
-- back and deleted; reason says what failed. free_bytes: the room left on
-- a file store's file system (none left: not healthy).
CREATE OR REPLACE SQL SECURITY DEFINER VIEW dj_udf.health AS
SELECT h.store, h.protocol, h.healthy, h.reason, h.free_bytes, h.seconds
  FROM JSON_TABLE((SELECT CONVERT(dj_store_health(MIN(purge_key)) USING utf8mb4) FROM dj_udf.purge_key), '$[*]' COLUMNS (
       store varchar(64) CHARACTER SET utf8mb4 PATH '$.store',
       protocol varchar(8) CHARACTER SET utf8mb4 PATH '$.protocol',
       healthy boolean PATH '$.healthy',
       reason varchar(2000) CHARACTER SET utf8mb4 PATH '$.reason',
       free_bytes bigint unsigned PATH '$.free_bytes',
       seconds double PATH '$.seconds')) h;

DELIMITER $$

-- CALL dj_udf.store_health(): the rows of dj_udf.health (the caller needs
-- SELECT on it), one per store, the unhealthy first.
DROP PROCEDURE IF EXISTS dj_udf.store_health $$
CREATE PROCEDURE dj_udf.store_health()
  SQL SECURITY INVOKER READS SQL DATA
BEGIN
  SELECT * FROM dj_udf.health ORDER BY healthy, store;
END $$

-- Zeroes the counters of dj_udf.store_stats and dj_udf.store_latency on
-- this server. Needs SELECT on dj_udf.purge_key, like every routine that
-- passes the key on.
DROP PROCEDURE IF EXISTS dj_udf.reset_store_stats $$
CREATE PROCEDURE dj_udf.reset_store_stats()
  SQL SECURITY INVOKER READS SQL DATA
BEGIN
  DECLARE k varchar(255);
  CALL dj_udf.purge_key_for('dj_udf.reset_store_stats', k);
  IF dj_reset_store_stats(k) IS NULL THEN CALL dj_udf.fail('dj_udf.reset_store_stats'); END IF;
END $$

DELIMITER ;
