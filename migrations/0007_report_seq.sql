-- Check-in reports carry a sequence number that only goes up per device (a replay is refused),
-- and what one device can make the server record is bounded per hour (server/director.c).
ALTER TABLE devices ADD COLUMN report_seq bigint;
ALTER TABLE devices ADD COLUMN report_window timestamptz;
ALTER TABLE devices ADD COLUMN report_writes integer NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN report_drops integer NOT NULL DEFAULT 0;
