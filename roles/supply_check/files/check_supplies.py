"""Check, from the control node, that every image and download of the paper profile can be had.

Reads a JSON list of items on stdin, writes a JSON list of results on stdout. An item is
  {"kind": "image", "ref": "bitnami/kafka:1.1.0-r0", "variable": "kafka_image"}
  {"kind": "url", "ref": "https://.../minikube-linux-amd64", "variable": "minikube_url"}
  {"kind": "archive", "ref": "/srv/images/k8s.tar", "variable": "docker_pinned_image_archives"}
An image passes when the registry serves a manifest the VMs' Docker (17.03) can pull: a schema-2 manifest, or a
schema-2 manifest list whose linux/amd64 entry is a schema-2 manifest (schema 1 is accepted too). Docker 17.03
predates the OCI image formats: an image published only as an OCI index or OCI manifest (as Docker Hub's
official-library images now are) cannot be pulled by it. A URL passes when it answers 2xx (after redirects), a
file:// URL or an archive when the file exists.

Standard library only: it runs under Ansible's own Python. --allow-host limits which hosts are contacted at all
(the tests allow only 127.0.0.1); an item on another host is reported as not checked, and nothing is sent.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_V1 = (
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "application/vnd.docker.distribution.manifest.v1+json",
)
OCI_TYPES = ("application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json")
# What Docker 17.03's puller asks for (distribution/pull_v2.go): schema 2, manifest lists, schema 1.
ACCEPT = ", ".join((DOCKER_MANIFEST, DOCKER_LIST, *DOCKER_V1))
DOCKER_HUB = "registry-1.docker.io"


class Unchecked(Exception):
    """The item names a host the caller did not allow."""


def parse_image(ref: str) -> tuple[str, str, str]:
    """(registry, repository, tag or digest) as Docker normalizes a reference."""
    name, reference = ref, "latest"
    if "@" in name:
        name, reference = name.split("@", 1)
    else:
        last = name.rsplit("/", 1)[-1]
        if ":" in last:
            name, reference = name.rsplit(":", 1)
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        registry, repository = first, rest
    else:
        registry, repository = DOCKER_HUB, name
    if registry in ("docker.io", "index.docker.io"):
        registry = DOCKER_HUB
    if registry == DOCKER_HUB and "/" not in repository:
        repository = f"library/{repository}"
    return registry, repository, reference


def host_of(netloc: str) -> str:
    return urllib.parse.urlsplit(f"//{netloc}").hostname or netloc


class Checker:
    def __init__(self, allowed: list[str], insecure: list[str], timeout: float) -> None:
        self.allowed, self.insecure, self.timeout = allowed, insecure, timeout

    def guard(self, url: str) -> None:
        host = urllib.parse.urlsplit(url).hostname or ""
        if self.allowed and host not in self.allowed:
            raise Unchecked(f"not checked: {host} is not among the allowed hosts {self.allowed}")

    def open(self, url: str, headers: dict | None = None, method: str = "GET"):
        """urlopen for http(s) URLs on allowed hosts only (redirects included)."""
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            raise Unchecked(f"not checked: {url} is neither http nor https")
        self.guard(url)
        request = urllib.request.Request(url, headers=headers or {}, method=method)  # noqa: S310 - scheme checked above
        return urllib.request.build_opener(GuardedRedirects(self)).open(request, timeout=self.timeout)

    def scheme(self, registry: str) -> str:
        host = host_of(registry)
        return "http" if host in ("127.0.0.1", "localhost") or registry in self.insecure else "https"

    # --- images -------------------------------------------------------------------------------------------------
    def manifest(
        self, registry: str, repository: str, reference: str, token: str | None
    ) -> tuple[str, bytes, str | None]:
        url = f"{self.scheme(registry)}://{registry}/v2/{repository}/manifests/{reference}"
        headers = {"Accept": ACCEPT}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            with self.open(url, headers) as response:
                body = response.read()
                media = (response.headers.get("Content-Type") or "").split(";")[0].strip()
                if not media or media == "application/json":
                    media = json.loads(body or b"{}").get("mediaType", "")
                return media, body, token
        except urllib.error.HTTPError as error:
            challenge = error.headers.get("WWW-Authenticate", "")
            if error.code == 401 and challenge.lower().startswith("bearer") and token is None:
                return self.manifest(registry, repository, reference, self.token(challenge, repository))
            raise

    def token(self, challenge: str, repository: str) -> str:
        fields = dict(part.strip().split("=", 1) for part in challenge[len("Bearer ") :].split(",") if "=" in part)
        fields = {key: value.strip('"') for key, value in fields.items()}
        query = {"scope": fields.get("scope", f"repository:{repository}:pull")}
        if "service" in fields:
            query["service"] = fields["service"]
        url = f"{fields['realm']}?{urllib.parse.urlencode(query)}"
        with self.open(url) as response:
            answer = json.load(response)
        return answer.get("token") or answer.get("access_token", "")

    def image(self, ref: str) -> str:
        """'' when the VMs' Docker can pull ref, else why not."""
        registry, repository, reference = parse_image(ref)
        media, body, token = self.manifest(registry, repository, reference, None)
        if media in OCI_TYPES:
            return (
                f"the registry serves it only as {media}, an OCI format Docker 17.03 cannot pull "
                "(it needs a schema-2 manifest or manifest list)"
            )
        if media == DOCKER_LIST:
            entries = json.loads(body).get("manifests", [])
            amd64 = [
                entry
                for entry in entries
                if entry.get("platform", {}).get("os") == "linux"
                and entry.get("platform", {}).get("architecture") == "amd64"
            ]
            if not amd64:
                return "its manifest list has no linux/amd64 image"
            media, _, _ = self.manifest(registry, repository, amd64[0]["digest"], token)
            if media != DOCKER_MANIFEST:
                found = media or "of unknown type"
                return f"the linux/amd64 entry of its manifest list is {found}, not a schema-2 manifest"
            return ""
        if media == DOCKER_MANIFEST or media in DOCKER_V1:
            return ""
        return f"the registry answered with an unknown manifest type {media or '(none)'}"

    # --- URLs ---------------------------------------------------------------------------------------------------
    def url(self, url: str) -> str:
        if url.startswith("file://"):
            path = urllib.parse.urlsplit(url).path
            return "" if os.path.isfile(path) else f"{path} does not exist"
        for method, headers in (("HEAD", {}), ("GET", {"Range": "bytes=0-0"})):
            try:
                with self.open(url, headers, method):
                    return ""
            except urllib.error.HTTPError as error:
                if method == "HEAD" and error.code in (403, 405, 501):
                    continue  # some hosts refuse HEAD; ask for one byte instead
                return f"HTTP {error.code} {error.reason}"
        return "no answer"

    def check(self, item: dict) -> dict:
        kind, ref = item["kind"], item["ref"]
        try:
            if kind == "image":
                problem = self.image(ref)
            elif kind == "url":
                problem = self.url(ref)
            elif kind == "archive":
                problem = "" if os.path.isfile(ref) else f"{ref} does not exist on the control node"
            else:
                problem = f"unknown kind {kind!r}"
        except Unchecked as error:
            problem = str(error)
        except urllib.error.HTTPError as error:
            problem = "not found (HTTP 404)" if error.code == 404 else f"HTTP {error.code} {error.reason}"
        except (urllib.error.URLError, OSError, ValueError, KeyError) as error:
            problem = f"no answer: {getattr(error, 'reason', error)}"
        return {**item, "ok": not problem, "problem": problem}


class GuardedRedirects(urllib.request.HTTPRedirectHandler):
    """Follows redirects (k8s.gcr.io -> registry.k8s.io, GitHub -> its CDN) only to allowed hosts."""

    def __init__(self, checker: Checker) -> None:
        self.checker = checker

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        self.checker.guard(newurl)
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and req.get_method() == "HEAD":
            new.method = "HEAD"
        return new


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--allow-host", action="append", default=[], help="contact only these hosts (repeatable)")
    parser.add_argument("--insecure-registry", action="append", default=[], help="registry reached over plain HTTP")
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds per request")
    args = parser.parse_args()
    checker = Checker(args.allow_host, args.insecure_registry, args.timeout)
    items = json.load(sys.stdin)
    json.dump([checker.check(item) for item in items], sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
