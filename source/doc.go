// Package source is where capstan's manifests come from: a local directory, or a Git
// repository followed at a branch, tag or commit, plus the webhook receivers that make a
// push visible at once.
//
// A Source hands out Snapshots: a directory of files and the Revision they are
// (`<ref>@sha1:<40 hex>` for Git, `local@sha256:<64 hex>` — a content digest — for a local
// directory). Head asks only for the current revision; Fetch also makes its files
// available on disk.
//
// The Git source keeps one bare repository per remote URL under a cache directory, so a
// process that runs again (a second `capstan diff`, the next poll of `capstan run`) starts
// from what it already has:
//
//   - every Head and Fetch first lists the remote's refs — one request over HTTP — and
//     when the ref still points at the commit already cached, nothing else goes over
//     the network: no git-upload-pack request, no pack;
//   - a new commit is fetched shallow (depth 1) into the cache, sending the cached
//     commits as "haves", so only the new objects travel; it is then written out into
//     a per-commit checkout directory;
//   - a full commit id needs no network at all once it is cached.
//
// The source refuses, with a typed error, what a deployment should not follow silently:
// a branch whose new head does not descend from the one last fetched (force-push), a tag
// that moved, a ref that was deleted. The caller keeps the last good Snapshot applied;
// Options.AllowRewrite follows rewrites deliberately. Errors also distinguish an
// unreachable server, refused credentials, a host key that does not verify, a URL that
// is not a repository and a ref that does not exist; see Error and the Err* kinds.
//
// Credentials are never written to the cache (the cached repository's config holds the
// URL without userinfo), never part of a Revision, a log line or an error message.
//
// Webhooks (NewWebhooks) verify a GitHub, GitLab, Gitea or generic signature in
// constant time and then only signal "poll now": the payload's commit id is never
// trusted, the poll asks the server itself.
package source
