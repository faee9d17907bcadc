// tuf-js, the sigstore project's TUF client (pinned in scripts/tufjs), as a stock client of
// gangliond's image repository: node tufjs_client.js refresh|download METADATA_URL METADATA_DIR
// TARGET_DIR TARGET_BASE_URL TOKEN [TARGET]. Every metadata request carries the bearer token
// (gangliond asks for one). Prints each request and the outcome; exits 0 on success, 1 on failure.
const { Updater, BaseFetcher } = require('tuf-js');
const { DownloadHTTPError } = require('tuf-js/dist/error');
const fetch = require('make-fetch-happen');

const [cmd, metadataBaseUrl, metadataDir, targetDir, targetBaseUrl, token, target] = process.argv.slice(2);

class TokenFetcher extends BaseFetcher {
  async fetch(url) {
    const r = await fetch(url, { headers: { Authorization: `Bearer ${token}` }, retry: false });
    console.log(`GET ${new URL(url).pathname} ${r.status}`);
    if (!r.ok || !r.body) throw new DownloadHTTPError(`HTTP ${r.status} for ${url}`, r.status);
    return r.body;
  }
}

(async () => {
  const u = new Updater({ metadataBaseUrl, metadataDir, targetDir, targetBaseUrl, fetcher: new TokenFetcher() });
  await u.refresh();
  if (cmd === 'download') {
    const info = await u.getTargetInfo(target);
    if (!info) throw new Error(`no target ${target}`);
    await u.downloadTarget(info, `${targetDir}/target`);
  }
  console.log(`${cmd}: ok`);
})().catch((e) => {
  console.log(`${cmd}: failed: ${e.constructor.name}: ${e.message}`);
  process.exit(1);
});
