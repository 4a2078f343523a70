-- The seed examples in plain SQL. scripts/demo.sh runs this file against a
-- throwaway server after replacing @IMPORT@, @STAGE@ and @EXPORT@ with its
-- folders; any SQL client can send the same statements.

CREATE DATABASE IF NOT EXISTS lab;

-- Tracking tables, exactly as DataJoint creates them.
CALL dj_udf.create_tracking_table('lab', 'localattach');
CALL dj_udf.create_tracking_table('lab', 'data');
CALL dj_udf.create_tracking_table('lab', 'main');

-- A ScanAttachment-style table: an attach@localattach column.
CREATE TABLE IF NOT EXISTS lab.scan_attachment (
  scan_id int NOT NULL,
  scan_image binary(16) NOT NULL COMMENT ':attach@localattach:attached image scans',
  PRIMARY KEY (scan_id),
  FOREIGN KEY (scan_image) REFERENCES lab.`~external_localattach` (hash) ON UPDATE RESTRICT ON DELETE RESTRICT
) ENGINE=InnoDB;

-- A ScanImages-style table: a filepath@data column.
CREATE TABLE IF NOT EXISTS lab.scan_images (
  scan_id int NOT NULL,
  image_path binary(16) NOT NULL COMMENT ':filepath@data:image file in the stage',
  PRIMARY KEY (scan_id),
  FOREIGN KEY (image_path) REFERENCES lab.`~external_data` (hash) ON UPDATE RESTRICT ON DELETE RESTRICT
) ENGINE=InnoDB;

-- A blob@main column.
CREATE TABLE IF NOT EXISTS lab.trace (
  trace_id int NOT NULL,
  samples binary(16) DEFAULT NULL COMMENT ':blob@main:packed samples',
  PRIMARY KEY (trace_id),
  FOREIGN KEY (samples) REFERENCES lab.`~external_main` (hash) ON UPDATE RESTRICT ON DELETE RESTRICT
) ENGINE=InnoDB;

-- Attach bytes sent by the client: two statements.
CALL dj_udf.attach_put('localattach', 'lab', 'notes.txt', 'scan taken at 10:42, laser 30%\n', @h);
INSERT INTO lab.scan_attachment VALUES (1, @h);

-- Attach a file that is already on the database server: two statements.
CALL dj_udf.attach_put_file('localattach', 'lab', '@IMPORT@/scan_0002.png', @h);
INSERT INTO lab.scan_attachment VALUES (2, @h);

-- A filepath below the store's stage: uploaded to the store once.
CALL dj_udf.filepath_put('data', 'lab', '@STAGE@/session1/image_0001.tif', @h);
INSERT INTO lab.scan_images VALUES (1, @h);

-- A blob: the bytes DataJoint's blob.pack(3.0) produces.
CALL dj_udf.blob_put('main', 'lab', 0x646a30000d0000000000000840, @h);
INSERT INTO lab.trace VALUES (1, @h), (2, NULL);

-- The tracking rows, as DataJoint would have written them.
SELECT HEX(hash), size, attachment_name FROM lab.`~external_localattach`;
SELECT HEX(hash), size, filepath, HEX(contents_hash) FROM lab.`~external_data`;

-- Verified contents and names of a user table's rows, in one SELECT.
SELECT a.scan_id, x.attachment_name, dj_udf.attach_get('localattach', 'lab', a.scan_image, x.attachment_name) AS contents
  FROM lab.scan_attachment a
  JOIN lab.`~external_localattach` x ON x.hash = a.scan_image
 WHERE a.scan_id = 1;
-- (the same for all rows, shown by size and first bytes)
SELECT scan_id, attachment_name, LENGTH(contents) AS bytes, HEX(LEFT(contents, 8)) AS first_bytes
  FROM (SELECT a.scan_id, x.attachment_name,
               dj_udf.attach_get('localattach', 'lab', a.scan_image, x.attachment_name) AS contents
          FROM lab.scan_attachment a JOIN lab.`~external_localattach` x ON x.hash = a.scan_image) AS fetched;
SELECT t.trace_id, HEX(dj_udf.blob_get('main', 'lab', t.samples)) AS packed FROM lab.trace t;

-- Export an attachment into a server folder (DataJoint's _0000 alias rule).
SELECT dj_udf.attach_export('localattach', 'lab', a.scan_image, x.attachment_name, '@EXPORT@') AS exported
  FROM lab.scan_attachment a JOIN lab.`~external_localattach` x ON x.hash = a.scan_image;

-- Sync a filepath back to its stage, checked by size and checksum.
SELECT dj_udf.filepath_get('data', x.filepath, x.contents_hash, x.size) AS local_copy
  FROM lab.scan_images i JOIN lab.`~external_data` x ON x.hash = i.image_path;

-- Audit a whole tracking table.
CALL dj_udf.verify('lab', 'localattach');

-- Delete a row, then clean up: unused tracking rows and their objects go.
-- cleanup leaves rows put within the last cleanup_grace_seconds (an hour
-- by default); this example's are seconds old, so it sets none for a moment.
DELETE FROM lab.scan_attachment WHERE scan_id = 1;
UPDATE dj_udf.settings SET value = '0' WHERE name = 'cleanup_grace_seconds';
CALL dj_udf.cleanup('lab', 'localattach', @rows, @objects, @failures);
UPDATE dj_udf.settings SET value = '3600' WHERE name = 'cleanup_grace_seconds';
SELECT @rows AS tracking_rows_deleted, @objects AS objects_deleted, @failures AS failures;
CALL dj_udf.verify('lab', 'localattach');
