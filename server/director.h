/* The director (Uptane's split): a TUF repository per device whose targets name what that device
 * should run now, signed by an online key with a short expiry, and the desired state it signs:
 * assignments of a model version to one device or to every device a label selector matches.
 * Also what devices report when they check in. Domain layer. */
#ifndef GD_DIRECTOR_H
#define GD_DIRECTOR_H

#include <jansson.h>

#include "actor.h"
#include "db.h"
#include "tuf_sign.h"

/* One model a device should run, and the file its target names. */
struct director_want {
	char model[128], version[72], assigned_at[24];
	char filename[160], sha256[65], length[32];
};

/* A device's newest signed director targets and its desired state, as the re-sign rule sees them.
 * The keys are gn_desired_key's form (migrations/0008_multi_model.sql): "MODEL=VERSION@ASSIGNED_AT"
 * of each model, ordered by model, joined by ","; "" for nothing. */
struct director_state {
	/* The newest signed targets (version 0: none yet) and the key of what they name (new). */
	int version;
	int64_t created, expires;
	char *key;
	bool retired_key;   /* a director key since retired (a rotation) signed them */
	bool unsnapshotted; /* signed without snapshot and timestamp, which the director now signs */
	/* What the device should run now: its key (new) and the models with their files (new). */
	char *want_key;
	struct director_want *want;
	size_t nwant;
};
/* Frees what st holds and empties it; st itself is the caller's. */
void director_state_cleanup(struct director_state *st);

/* The re-sign rule: true when the device's director targets must be signed anew at now, because
 * there are none yet, a key since retired signed them, they lack the snapshot and timestamp that
 * the director now signs, the desired state changed since they were
 * signed (a model added or removed, another version, or a new assignment time), or they have less
 * than half of their lifetime left. Pure. */
bool director_needs_signing(const struct director_state *st, int64_t now);
/* Returns when st's signed targets will need signing anew (half their lifetime). Pure. */
int64_t director_fresh_until(const struct director_state *st);

/* Returns the device's current director targets (the stored bytes, new) and their version,
 * signing a new version first when director_needs_signing says so; *out_fresh_until (may be
 * NULL) is when this answer will need signing anew. Most calls only read; to sign it opens its
 * own transaction, so it must not be called inside one (an assertion). */
int director_current(char **out_body, int *out_version, int64_t *out_fresh_until, db_conn *c,
		     const struct tuf_settings *s, const char *device_id, gn_err *err) GN_WUR;
/* Signs the device's director targets anew if they need it, so its next check-in sees a change
 * made in this transaction; *out_version (may be NULL) gets their version. Runs inside the
 * caller's transaction and holds the device's director lock until it ends. */
int director_sync(int *out_version, db_conn *c, const struct tuf_settings *s, const char *device_id,
		  gn_err *err) GN_WUR;
/* Returns the device's director metadata of role ("targets", "snapshot" or "timestamp") at version
 * (the stored bytes, new): 0 = the newest, signed anew first when director_needs_signing says so
 * (so it must not be called inside a transaction). GN_ENOTFOUND when there is no such version, or
 * it has no such role (signed while the director root listed only root and targets). */
int director_metadata_get(char **out, db_conn *c, const struct tuf_settings *s, const char *device_id, const char *role,
			  int version, gn_err *err) GN_WUR;
/* Returns the director's root metadata at version (0 = the newest) in *out (new); GN_ENOTFOUND
 * when there is none. A plain read. */
int director_root_get(char **out, db_conn *c, int version, gn_err *err) GN_WUR;
/* Tells the director that its targets key changed (a rotation, or an imported root that lists a
 * pending key): every replica drops its cached check-in answers when the caller's transaction
 * commits, so each device's next check-in signs its targets anew with the new key (the re-sign
 * rule's retired key). Runs inside the caller's transaction. */
int director_key_changed(db_conn *c, gn_err *err) GN_WUR;

/* The outcome of an assignment. */
struct director_assignment {
	char version[72];     /* the version assigned (an alias resolves to one) */
	int director_version; /* the device's director targets version after the change */
};
/* Makes the active device run model at version (a version or an alias, resolved now), beside the
 * other models it runs, as a per-device override (it replaces what a deployment gave it for that
 * model) and signs its director targets anew. GN_ENOTFOUND for an unknown model version or
 * alias, or no such active device. Opens its own transaction, audited (device.assign). */
int director_assign(struct director_assignment *out, db_conn *c, const struct tuf_settings *s,
		    const struct gd_actor *who, const char *device_id, const char *model, const char *version,
		    gn_err *err) GN_WUR;
/* Removes the device's per-device assignment of model (NULL: of every model) and signs its
 * director targets anew; *out_version (may be NULL) is their version. What a deployment gives the
 * device is not an assignment to remove: naming such a model is GN_ECONFLICT (naming the
 * deployment), and without a model those stay. GN_ENOTFOUND when there is no such device, or
 * the device has no desired version of the model named. Opens its own transaction, audited
 * (device.unassign). */
int director_unassign(int *out_version, db_conn *c, const struct tuf_settings *s, const struct gd_actor *who,
		      const char *device_id, const char *model, gn_err *err) GN_WUR;
/* Makes every active device that the label selector matches run model at version (or alias);
 * *out_devices lists their ids (new) and out_version gets the version assigned. The change and
 * its audit row (device.assign on the selector) commit in a transaction of its own; each device's
 * targets are then signed anew, each in its own (a failure there is left to the device's next
 * check-in, which signs whatever is stale). GN_EINVAL for an empty or malformed selector, or one
 * that matches more than 100000 devices (a rollout's job); GN_ENOTFOUND for an unknown version. */
int director_assign_selector(json_t **out_devices, char out_version[72], db_conn *c, const struct tuf_settings *s,
			     const struct gd_actor *who, const char *selector, const char *model, const char *version,
			     gn_err *err) GN_WUR;

/* What became of a check-in's report (besides GN_ECONFLICT for an older sequence number). */
enum director_report_outcome {
	DIRECTOR_REPORT_STORED,      /* recorded as far as it changed anything (or nothing to record) */
	DIRECTOR_REPORT_REPLAY,      /* the sequence number last recorded: a replay, nothing recorded */
	DIRECTOR_REPORT_NO_SEQ,      /* no sequence number from a device that sent them: nothing recorded */
	DIRECTOR_REPORT_OVER_BUDGET, /* over per_hour writes this hour: what changed was not recorded */
};
/* Records a check-in: the device's report (JSON text), its facts and its last operation (JSON
 * text or NULL), the last-seen time, and seq, the report's sequence number (> 0; 0 from an agent
 * that sends none). A device's sequence numbers only go up: one below the last recorded is
 * GN_ECONFLICT (*out_last_seq says the last), one equal to it is a replay and records nothing,
 * and once a device has sent one, a report without one records nothing. Writes only what changed
 * (last seen at most every 30 seconds), and at most per_hour changed reports and new events (an
 * operation other than the last one recorded) per device and hour. One statement, in no
 * transaction of its own. */
int director_report(enum director_report_outcome *out, int64_t *out_last_seq, db_conn *c, const char *device_id,
		    const char *reported, const char *facts, const char *operation, int64_t seq, int per_hour,
		    gn_err *err) GN_WUR;
/* Returns the newest root versions of the image repository and of the director. A plain read. */
int director_root_versions(int *out_image, int *out_director, db_conn *c, gn_err *err) GN_WUR;
/* Pages over a device's events, newest first: ($1 device id, $2 cursor id or NULL, $3 limit) ->
 * (JSON text, id). */
extern const db_stmt director_events_stmt;

#endif
