"""Base images kept on this machine once built, so the next registry that lacks them gets a copy in
seconds instead of a build in minutes.

The embedded default makes its base images itself (``bases.BasePreparer``): the Python base from
Debian's packages (about a minute) and KubeStudio's single-user image on it (about two more). A
second hub on the machine, a hub with a new registry, or a test's hub would make the same images
again. Once made, an image's manifest and blobs are copied out of the registry into a folder of
the cache (the compressed layers as the registry holds them, each checked against its digest),
and copied back into a registry that lacks them: nothing is rebuilt or recompressed.

An entry is named by what went into the image (``key``), so a changed package list, Dockerfile or
KubeStudio makes a new entry, and only the newest few per repository are kept.
"""

import hashlib
import json
import os
import re
import shutil
import uuid

MANIFEST = "manifest"
MEDIA_TYPE = "media-type"
SINGLE_IMAGE_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)


class ImageCache:
    """Images as files in ``folder``: ``<entry>/manifest`` (its exact bytes), ``<entry>/media-type``
    and ``<entry>/blobs/<sha256 hex>``."""

    def __init__(self, folder, registry, keep_per_repository=2):
        self.folder = folder
        self.registry = registry
        self.keep_per_repository = keep_per_repository

    @staticmethod
    def entry_name(repository, tag, key):
        digest = hashlib.sha256(json.dumps([repository, tag, key]).encode()).hexdigest()[:16]
        return f"{re.sub(r'[^A-Za-z0-9_.-]', '-', repository)}--{re.sub(r'[^A-Za-z0-9_.-]', '-', tag)}--{digest}"

    def entry(self, repository, tag, key):
        return os.path.join(self.folder, self.entry_name(repository, tag, key))

    def has(self, repository, tag, key):
        return os.path.isfile(os.path.join(self.entry(repository, tag, key), MANIFEST))

    async def save(self, repository, tag, key):
        """Copy repository:tag out of the registry into the cache; False for an image it does not
        keep (a multi-platform index). RegistryError and OSError go to the caller."""
        found = await self.registry.manifest_bytes(repository, tag)
        if found is None:
            return False
        media_type, raw = found
        manifest = json.loads(raw)
        media_type = media_type or manifest.get("mediaType", "")
        if media_type not in SINGLE_IMAGE_TYPES or "layers" not in manifest:
            return False
        target = self.entry(repository, tag, key)
        partial = f"{target}.{uuid.uuid4().hex[:8]}.partial"
        os.makedirs(os.path.join(partial, "blobs"))
        try:
            for digest in _blob_digests(manifest):
                path = os.path.join(partial, "blobs", digest.split(":", 1)[1])
                if not self._link_kept(digest, path):
                    await self.registry.get_blob(repository, digest, path)
            with open(os.path.join(partial, MEDIA_TYPE), "w") as f:
                f.write(media_type)
            with open(os.path.join(partial, MANIFEST), "wb") as f:  # last: an entry with it is whole
                f.write(raw)
            shutil.rmtree(target, ignore_errors=True)
            os.rename(partial, target)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        self._prune(repository, tag, keep=target)
        return True

    async def restore(self, repository, tag, key):
        """Push the cached copy of repository:tag (made from ``key``) into the registry; False when
        the cache has none. RegistryError and OSError go to the caller."""
        entry = self.entry(repository, tag, key)
        try:
            with open(os.path.join(entry, MANIFEST), "rb") as f:
                raw = f.read()
            with open(os.path.join(entry, MEDIA_TYPE)) as f:
                media_type = f.read().strip()
        except FileNotFoundError:
            return False
        for digest in _blob_digests(json.loads(raw)):
            await self.registry.put_blob(repository, digest, os.path.join(entry, "blobs", digest.split(":", 1)[1]))
        await self.registry.put_manifest(repository, tag, media_type, raw)
        os.utime(entry)  # recently used: the last to be pruned
        return True

    def _link_kept(self, digest, path):
        """Link ``path`` to the copy of blob ``digest`` another entry keeps (the single-user image
        shares every layer but its top one with the image it is made from); False when none does."""
        name = digest.split(":", 1)[1]
        for entry in os.listdir(self.folder):
            kept = os.path.join(self.folder, entry, "blobs", name)
            if entry.endswith(".partial") or not os.path.isfile(kept):
                continue
            try:
                os.link(kept, path)
                return True
            except OSError:
                return False
        return False

    def _prune(self, repository, tag, keep):
        """Keep the newest ``keep_per_repository`` entries of ``repository``."""
        prefix = self.entry_name(repository, tag, None).rsplit("--", 2)[0] + "--"
        entries = []
        for name in os.listdir(self.folder):
            path = os.path.join(self.folder, name)
            if name.startswith(prefix) and not name.endswith(".partial") and os.path.isdir(path):
                entries.append((os.path.getmtime(path), path))
        for _, path in sorted(entries, reverse=True)[self.keep_per_repository :]:
            if path != keep:
                shutil.rmtree(path, ignore_errors=True)


def _blob_digests(manifest):
    digests = [manifest["config"]["digest"]] + [layer["digest"] for layer in manifest["layers"]]
    for digest in digests:
        if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
            raise ValueError(f"unsupported blob digest {digest!r}")
    return digests
