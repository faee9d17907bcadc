/* Downloads an artifact the metadata has signed: resumes a partial file with HTTP Range, never
 * accepts more than the signed length, hashes as it goes, gives up on a deadline or below a
 * minimum rate (slow retrieval), and moves only a verified file into models/. */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "agent.h"
#include "log.h"

struct dl {
	int fd;
	uint64_t have, length;
	EVP_MD_CTX *sha;
	bool overflow;
	bool write_failed;
	long status;
};

static size_t on_data(char *p, size_t size, size_t n, void *ud)
{
	struct dl *d = ud;
	size_t len = size * n;
	if (d->status != 206 && d->status != 200)
		return len; /* an error body: discard, the status says it all */
	if (d->have + len > d->length) {
		/* More bytes than were signed: stop reading (endless-data attack). */
		d->overflow = true;
		return 0;
	}
	size_t off = 0;
	while (off < len) {
		ssize_t w = write(d->fd, p + off, len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			d->write_failed = true;
			return 0;
		}
		off += (size_t)w;
	}
	EVP_DigestUpdate(d->sha, p, len);
	d->have += len;
	return len;
}

/* Ends the transfer early when the agent is asked to stop (SIGTERM); the part file stays. */
static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
	const struct agent *a = ud;
	return atomic_load(&a->stopping) ? 1 : 0;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
	struct dl *d = ud;
	if (size * n > 9 && strncmp(p, "HTTP/", 5) == 0) {
		const char *sp = memchr(p, ' ', size * n);
		if (sp)
			d->status = strtol(sp + 1, NULL, 10);
	}
	return size * n;
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

int download_artifact(struct agent *a, const char *sha256, uint64_t length, char **out_path, gn_err *err)
{
	int rc = 0;
	CURL *h = NULL;
	struct curl_slist *hdrs = NULL;
	char *part = gn_asprintf("%s/downloads/%s.part", a->cfg.data_dir, sha256);
	char *final = gn_asprintf("%s/models/%s", a->cfg.data_dir, sha256);
	char *url = gn_asprintf("%s/v1/artifacts/sha256/%s", a->cfg.server_url, sha256);
	char errbuf[CURL_ERROR_SIZE] = "", range[64], sum[GN_SHA256_HEX_LEN + 1];
	unsigned char md[GN_SHA256_LEN];
	unsigned int mdlen;
	struct dl d = {.fd = -1, .length = length};
	struct stat st;
	bool resumed = false, retried = false;

	/* Already verified and stored (e.g. the previous version): nothing to fetch. */
	if (stat(final, &st) == 0 && (uint64_t)st.st_size == length) {
		*out_path = final;
		final = NULL;
		goto out;
	}
again:
	d = (struct dl){.fd = -1, .length = length};
	d.sha = EVP_MD_CTX_new();
	EVP_DigestInit_ex(d.sha, EVP_sha256(), NULL);
	d.fd = open(part, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (d.fd < 0) {
		rc = gn_err_set(err, GN_ERROR, "cannot open %s: %s", part, strerror(errno));
		goto out;
	}
	if ((rc = hash_existing(&d, err)))
		goto out;
	if (d.have > length) {
		/* Longer than signed: not ours to resume. */
		if (ftruncate(d.fd, 0) < 0 || lseek(d.fd, 0, SEEK_SET) < 0) {
			rc = gn_err_set(err, GN_ERROR, "cannot reset %s", part);
			goto out;
		}
		EVP_DigestInit_ex(d.sha, EVP_sha256(), NULL);
		d.have = 0;
	}
	if (d.have > 0) {
		resumed = true;
		gn_log(GN_LOG_INFO, "event=download_resume sha256=%s have=%llu length=%llu", sha256,
		       (unsigned long long)d.have, (unsigned long long)length);
	}
	if (d.have < length) {
		if ((rc = client_ensure_token(a, err)))
			goto out;
		char *auth = gn_asprintf("Authorization: Bearer %s", a->token);
		hdrs = curl_slist_append(NULL, auth);
		free(auth);
		h = curl_easy_init();
		curl_easy_setopt(h, CURLOPT_URL, url);
		curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
		curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
		curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
		curl_easy_setopt(h, CURLOPT_WRITEDATA, &d);
		curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
		curl_easy_setopt(h, CURLOPT_HEADERDATA, &d);
		curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
		curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
		curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
		curl_easy_setopt(h, CURLOPT_XFERINFODATA, a);
		curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 15L);
		curl_easy_setopt(h, CURLOPT_TIMEOUT, (long)a->cfg.download_deadline);
		curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, (long)a->cfg.download_min_rate);
		curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 30L);
		if (a->cfg.ca_file && *a->cfg.ca_file)
			curl_easy_setopt(h, CURLOPT_CAINFO, a->cfg.ca_file);
		if (a->cfg.pinned_pubkey && *a->cfg.pinned_pubkey)
			curl_easy_setopt(h, CURLOPT_PINNEDPUBLICKEY, a->cfg.pinned_pubkey);
		if (d.have > 0) {
			snprintf(range, sizeof(range), "%llu-", (unsigned long long)d.have);
			curl_easy_setopt(h, CURLOPT_RANGE, range);
		}
		if (lseek(d.fd, (off_t)d.have, SEEK_SET) < 0) {
			rc = gn_err_set(err, GN_ERROR, "cannot seek in %s", part);
			goto out;
		}
		uint64_t resumed_from = d.have;
		CURLcode cc = curl_easy_perform(h);
		if (resumed_from > 0 && d.status == 200) {
			/* The server ignored the Range: what we wrote follows the old part; start over next time. */
			if (ftruncate(d.fd, 0) < 0) {}
			rc = gn_err_set(err, GN_EUNAVAIL, "the server did not resume the download; restarting it");
			goto out;
		}
		if (d.overflow) {
			if (ftruncate(d.fd, 0) < 0) {}
			rc = gn_err_set(err, GN_EAUTH, "the server sent more than the signed %llu bytes", (unsigned long long)length);
			goto out;
		}
		if (d.write_failed) {
			rc = gn_err_set(err, GN_ERROR, "cannot write %s: %s", part, strerror(errno));
			goto out;
		}
		if (cc == CURLE_ABORTED_BY_CALLBACK) {
			rc = gn_err_set(err, GN_EUNAVAIL, "download paused at %llu of %llu bytes: the agent is stopping",
					(unsigned long long)d.have, (unsigned long long)length);
			goto out;
		}
		if (cc != CURLE_OK) {
			rc = gn_err_set(err, GN_EUNAVAIL, "download stopped at %llu of %llu bytes: %s", (unsigned long long)d.have,
					(unsigned long long)length, errbuf[0] ? errbuf : curl_easy_strerror(cc));
			goto out;
		}
		if (d.status != 200 && d.status != 206) {
			rc = gn_err_set(err, d.status == 404 ? GN_ENOTFOUND : GN_EUNAVAIL, "artifact download answered HTTP %ld", d.status);
			goto out;
		}
	}
	if (d.have != length) {
		rc = gn_err_set(err, GN_EUNAVAIL, "download ended at %llu of %llu bytes", (unsigned long long)d.have,
				(unsigned long long)length);
		goto out;
	}
	EVP_DigestFinal_ex(d.sha, md, &mdlen);
	gn_hex_encode(sum, md, sizeof(md));
	if (strcmp(sum, sha256) != 0) {
		/* Tampered or corrupt: throw it away, never load it. A resumed file may have carried a
		 * torn tail from a power cut: that earns one fresh download before we call it tampering. */
		unlink(part);
		if (resumed && !retried) {
			gn_log(GN_LOG_WARN, "event=download_restart sha256=%s why=\"resumed file did not verify\"", sha256);
			close(d.fd);
			d.fd = -1;
			EVP_MD_CTX_free(d.sha);
			d.sha = NULL;
			if (h)
				curl_easy_cleanup(h);
			h = NULL;
			curl_slist_free_all(hdrs);
			hdrs = NULL;
			retried = true;
			goto again;
		}
		rc = gn_err_set(err, GN_EAUTH, "downloaded bytes hash to %s, the signed SHA-256 is %s", sum, sha256);
		goto out;
	}
	if (fsync(d.fd) < 0 || fchmod(d.fd, 0400) < 0 || rename(part, final) < 0) {
		rc = gn_err_set(err, GN_ERROR, "cannot store the verified model: %s", strerror(errno));
		goto out;
	}
	char *dir = gn_asprintf("%s/models", a->cfg.data_dir);
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	free(dir);
	*out_path = final;
	final = NULL;
out:
	if (d.fd >= 0)
		close(d.fd);
	EVP_MD_CTX_free(d.sha);
	if (h)
		curl_easy_cleanup(h);
	curl_slist_free_all(hdrs);
	free(part);
	free(final);
	free(url);
	return rc;
}
