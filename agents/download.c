/* Downloads an artifact the metadata has signed: resumes a partial file with HTTP Range, never
 * accepts more than the signed length, hashes as it goes, gives up on a deadline or below a
 * minimum rate (slow retrieval), and moves only a verified file into models/. The transfer itself
 * is lib/http_client.c's gn_http_download, with the client's TLS set-up. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "agent.h"
#include "fileio.h"
#include "http_client.h"
#include "log.h"

#define CONNECT_TIMEOUT_S 15L
#define LOW_SPEED_TIME_S 30L

/* One artifact being fetched into downloads/SHA256.part. */
struct dl {
	const char *sha256;
	char *part, *final, *url; /* owned */
	uint64_t length;          /* signed */
	int fd;
	EVP_MD_CTX *sha;
	uint64_t have; /* bytes in the part file, all hashed */
	bool overflow; /* the server sent more than the signed length */
	bool resumed;  /* some attempt started from a partial file */
	bool retried;  /* the one fresh start after a resumed file failed its hash is used */
};

/* Appends a piece of the body to the part file and the hash (gn_http_sink_fn). */
static int on_data(void *ud, const void *p, size_t len, gn_err *err)
{
	struct dl *d = ud;
	size_t off = 0;
	if (d->have + len > d->length) {
		/* More bytes than were signed: stop reading (endless-data attack). */
		d->overflow = true;
		return gn_err_set(err, GN_EAUTH, "the server sent more than the signed %llu bytes",
				  (unsigned long long)d->length);
	}
	while (off < len) {
		ssize_t w = write(d->fd, (const char *)p + off, len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return gn_err_set(err, GN_ERROR, "cannot write %s: %s", d->part, strerror(errno));
		off += (size_t)w;
	}
	EVP_DigestUpdate(d->sha, p, len);
	d->have += len;
	return 0;
}

/* Starts the hash over with an empty part file. */
static int part_reset(struct dl *d, gn_err *err)
{
	if (ftruncate(d->fd, 0) < 0)
		return gn_err_set(err, GN_ERROR, "cannot reset %s: %s", d->part, strerror(errno));
	EVP_DigestInit_ex(d->sha, EVP_sha256(), NULL);
	d->have = 0;
	return 0;
}

/* Feeds the part already on disk into the hash, so a resumed file is hashed whole. */
static int hash_existing(struct dl *d, gn_err *err)
{
	unsigned char buf[1 << 16];
	ssize_t r;
	if (lseek(d->fd, 0, SEEK_SET) < 0)
		return gn_err_set(err, GN_ERROR, "cannot read the partial download: %s", strerror(errno));
	d->have = 0;
	while ((r = read(d->fd, buf, sizeof(buf))) > 0) {
		EVP_DigestUpdate(d->sha, buf, (size_t)r);
		d->have += (uint64_t)r;
	}
	if (r < 0)
		return gn_err_set(err, GN_ERROR, "cannot read the partial download: %s", strerror(errno));
	return 0;
}

/* Opens (or creates) the part file and hashes what it holds. */
static int part_open(struct dl *d, gn_err *err)
{
	int rc;
	d->fd = open(d->part, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (d->fd < 0)
		return gn_err_set(err, GN_ERROR, "cannot open %s: %s", d->part, strerror(errno));
	d->sha = EVP_MD_CTX_new();
	if (!d->sha || EVP_DigestInit_ex(d->sha, EVP_sha256(), NULL) != 1)
		abort();
	if ((rc = hash_existing(d, err)))
		return rc;
	/* Longer than signed: not ours to resume. */
	if (d->have > d->length && (rc = part_reset(d, err)))
		return rc;
	if (d->have > 0) {
		d->resumed = true;
		gn_log(GN_LOG_INFO, "event=download_resume sha256=%s have=%llu length=%llu", d->sha256,
		       (unsigned long long)d->have, (unsigned long long)d->length);
	}
	return 0;
}

static void part_close(struct dl *d)
{
	if (d->fd >= 0)
		close(d->fd);
	d->fd = -1;
	EVP_MD_CTX_free(d->sha);
	d->sha = NULL;
}

/* Fetches the bytes the part file lacks, appending and hashing them. */
static int fetch_rest(struct dl *d, struct agent *a, gn_err *err)
{
	long status = 0;
	uint64_t from = d->have;
	int rc;
	if ((rc = client_ensure_token(a, err)))
		return rc;
	if (lseek(d->fd, (off_t)d->have, SEEK_SET) < 0)
		return gn_err_set(err, GN_ERROR, "cannot seek in %s: %s", d->part, strerror(errno));
	gn_http_download_req req = {
		.url = d->url,
		.token = a->token,
		.ca_file = a->cfg.ca_file,
		.pinned_pubkey = a->cfg.pinned_pubkey,
		.client_cert = a->cfg.client_cert,
		.client_key = a->cfg.client_key,
		.offset = d->have,
		.length = d->length,
		.deadline_s = (long)a->cfg.download_deadline,
		.min_rate = (long)a->cfg.download_min_rate,
		.min_rate_time_s = LOW_SPEED_TIME_S,
		.connect_timeout_s = CONNECT_TIMEOUT_S,
		.stop = &a->stopping, /* SIGTERM: stop now, the part file stays for the next start */
		.sink = on_data,
		.sink_ud = d,
	};
	rc = gn_http_download(&status, &req, err);
	/* Too long, or the whole file again instead of the rest: what is on disk is no prefix of the
	 * artifact, so the next attempt starts from scratch. The error is the one already in err. */
	if (rc && (d->overflow || (from > 0 && status == 200)) && ftruncate(d->fd, 0) < 0)
		gn_log(GN_LOG_WARN, "event=download_reset_failed file=%s msg=\"%s\"", d->part, strerror(errno));
	return rc;
}

/* One attempt: resume the part file, fetch the rest, check length and hash, move it into
 * models/. Sets *out_again (returning 0) when a resumed file failed its hash for the first time:
 * it may carry a torn tail from a power cut, which earns one fresh download. */
static int attempt(struct dl *d, struct agent *a, bool *out_again, gn_err *err)
{
	unsigned char md[GN_SHA256_LEN];
	unsigned int mdlen;
	char sum[GN_SHA256_HEX_LEN + 1];
	int rc;
	*out_again = false;
	if ((rc = part_open(d, err)) || (d->have < d->length && (rc = fetch_rest(d, a, err))))
		goto out;
	if (d->have != d->length) {
		rc = gn_err_set(err, GN_EUNAVAIL, "download ended at %llu of %llu bytes", (unsigned long long)d->have,
				(unsigned long long)d->length);
		goto out;
	}
	EVP_DigestFinal_ex(d->sha, md, &mdlen);
	gn_hex_encode(sum, md, sizeof(md));
	if (strcmp(sum, d->sha256) != 0) {
		/* Tampered or corrupt: throw it away, never load it. */
		unlink(d->part);
		if (d->resumed && !d->retried) {
			gn_log(GN_LOG_WARN, "event=download_restart sha256=%s why=\"resumed file did not verify\"",
			       d->sha256);
			d->retried = *out_again = true;
			goto out;
		}
		rc = gn_err_set(err, GN_EAUTH, "downloaded bytes hash to %s, the signed SHA-256 is %s", sum, d->sha256);
		goto out;
	}
	rc = gn_file_commit(d->fd, d->part, d->final, 0400, err);
out:
	part_close(d);
	return rc;
}

int download_artifact(struct agent *a, const char *sha256, uint64_t length, char **out_path, gn_err *err)
{
	int rc = 0;
	bool again;
	struct stat st;
	struct dl d = {
		.sha256 = sha256,
		.part = gn_asprintf("%s/downloads/%s.part", a->cfg.data_dir, sha256),
		.final = gn_asprintf("%s/models/%s", a->cfg.data_dir, sha256),
		.url = gn_asprintf("%s/v1/artifacts/sha256/%s", a->cfg.server_url, sha256),
		.length = length,
		.fd = -1,
	};
	/* Already verified and stored (e.g. the previous version): nothing to fetch. */
	if (stat(d.final, &st) != 0 || (uint64_t)st.st_size != length) {
		do
			rc = attempt(&d, a, &again, err);
		while (!rc && again);
	}
	if (!rc) {
		*out_path = d.final;
		d.final = NULL;
	}
	free(d.part);
	free(d.final);
	free(d.url);
	return rc;
}
