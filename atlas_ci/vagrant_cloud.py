"""The Vagrant Cloud API (vagrant-cloud-wire.md §3 to §5): its calls, over :class:`ApiSession`.

Requests are made as Packer 1.6.6's ``vagrant-cloud`` post-processor makes them: every path
appended to the API root, ``Authorization: Bearer`` and ``Content-Type: application/json`` on
every API request. The POSTs that create something are never sent twice on a guess: after a
failure that leaves unknown whether one was processed, a read decides. Upload URLs and
callbacks are credentials: registered with :mod:`atlas_ci.redaction` the moment they arrive.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from atlas_ci.answers import Ambiguous, Answer, NotFound, errors_text
from atlas_ci.api_session import ApiSession
from atlas_ci.box_settings import BoxSettings
from atlas_ci.errors import AtlasCIError, RegistryRefused, RegistryUnavailable
from atlas_ci.redaction import register_url

JSON = {"Content-Type": "application/json"}
Object = Mapping[str, object]


class AlreadyReleased(RegistryRefused):
    """The release was refused because the version is released already: Packer's success."""


@dataclass(frozen=True)
class UploadTarget:
    """Where the box goes (``upload_path``) and, for a direct upload, what confirms it."""

    upload_path: str
    callback: str | None


class VagrantCloudClient(ApiSession):
    """One Vagrant Cloud API root; methods named after the steps of Packer's post-processor."""

    api_hint = "check that atlas_url is a Vagrant Cloud API root (such as https://host/api/v1)"
    auth_hint = (
        "check VAGRANT_CLOUD_TOKEN (else ATLAS_TOKEN, or the action's token input) and its "
        "rights on the box"
    )
    not_found_hint = "check the box tag and that atlas_url is the Vagrant Cloud API root"

    @property
    def box(self) -> BoxSettings:
        if self.settings.box is None:
            raise ValueError("the settings are not for the vagrant-cloud target")
        return self.settings.box

    def __enter__(self) -> VagrantCloudClient:
        return self

    def _auth_headers(self, url: str) -> dict[str, str]:
        token = self.settings.token
        return {"Authorization": f"Bearer {token.reveal()}"} if token else {}

    def bearer_for(self, url: str) -> dict[str, str]:
        """Packer's headers of the upload through the registry: the token only to its origin."""
        return {**JSON, **(self._auth_headers(url) if self._same_origin(url) else {})}

    def status_error(
        self, status: int, reason: str, content: bytes, what: str, tries: str = ""
    ) -> AtlasCIError:
        if 400 <= status < 500 and "already been released" in errors_text(content):
            return AlreadyReleased(f"the {what} was refused: {errors_text(content)}")
        return super().status_error(status, reason, content, what, tries)

    # --- reads ---------------------------------------------------------------------------

    def authenticate(self) -> None:
        """``GET /authenticate``, which Packer calls first."""
        self._call("GET", self.box.endpoint("authenticate"), what="token check", headers=JSON)

    def get_box(self, user: str, name: str) -> Object | None:
        """The box object, or None on 404."""
        return self._read_object(self.box.endpoint("box", user, name), "box lookup")

    def get_provider(self, user: str, name: str, version: str, provider: str) -> Object | None:
        """The provider object (its checksum says what file it holds), or None on 404."""
        url = self.box.endpoint("box", user, name, "version", version, "provider", provider)
        return self._read_object(url, "provider lookup")

    def upload_target(self, user: str, name: str, version: str, provider: str) -> UploadTarget:
        """``GET .../upload/direct`` (or ``.../upload`` with ``--no-direct-upload``)."""
        parts = ["box", user, name, "version", version, "provider", provider, "upload"]
        direct = self.box.direct_upload
        url = self.box.endpoint(*parts, *(["direct"] if direct else []))
        body = self._read_object(url, "upload preparation", missing_ok=False) or {}
        upload_path = _url_field(body, "upload_path", "upload preparation")
        callback = _url_field(body, "callback", "upload preparation") if direct else None
        return UploadTarget(upload_path, callback)

    # --- writes --------------------------------------------------------------------------

    def create_box(self, user: str, name: str) -> Object:
        """``POST /boxes`` (flat, as ``vagrant cloud publish`` sends it), unless it exists."""
        body = {"username": user, "name": name, "is_private": self.box.private}
        url = self.box.endpoint("boxes")
        return self._create(url, body, "box creation", lambda: self.get_box(user, name))

    def create_version(self, user: str, name: str, version: str) -> Object:
        """``POST /box/{u}/{n}/versions``, Packer's body; a version that appeared is reused."""
        fields: dict[str, object] = {"version": version}
        if self.box.description:
            fields["description"] = self.box.description  # Packer omits it when empty
        url = self.box.endpoint("box", user, name, "versions")

        def find() -> Object | None:
            return find_version(self.get_box(user, name), version)

        return self._create(url, {"version": fields}, "version creation", find)

    def create_provider(self, user: str, name: str, version: str, provider: str) -> Object:
        """``POST .../providers`` with ``{"provider": {"name"}}``, as Packer sends it."""
        url = self.box.endpoint("box", user, name, "version", version, "providers")
        return self._create(
            url,
            {"provider": {"name": provider}},
            "provider creation",
            lambda: self.get_provider(user, name, version, provider),
        )

    def confirm_upload(self, callback: str) -> None:
        """``PUT <callback>``, empty, after a direct upload (Packer sends the URL as given)."""
        self._call("PUT", callback, what="upload confirmation", headers=JSON, replayable=False)

    def release(self, user: str, name: str, version: str) -> bool:
        """``PUT .../release``; False when the version was released already."""
        url = self.box.endpoint("box", user, name, "version", version, "release")
        try:
            self._call("PUT", url, what="version release", headers=JSON)
        except AlreadyReleased:
            return False
        return True

    # --- helpers -------------------------------------------------------------------------

    def _read_object(self, url: str, what: str, *, missing_ok: bool = True) -> Object | None:
        try:
            answer = self._call("GET", url, what=what, headers=JSON)
        except NotFound:
            if missing_ok:
                return None
            raise
        return self._object(answer, what)

    def _object(self, answer: Answer, what: str) -> Object:
        body = self._json(answer, what)
        if not isinstance(body, dict):
            raise RegistryRefused(
                f"the answer to the {what} is not a JSON object ({answer.status})", self.api_hint
            )
        return body

    def _create(
        self,
        url: str,
        body: Mapping[str, object],
        what: str,
        find: Callable[[], Object | None],
    ) -> Object:
        """POST ``body`` once; after an unknown outcome or a refusal, ``find`` decides.

        A refusal may be a parallel job (or our own lost try) having made it first: what the
        API holds then is the answer, and only a confirmed absence sends the POST again.
        """
        tries = self.tries(what)
        while True:
            try:
                answer = self._call(
                    "POST", url, body=body, what=what, replayable=False, tries=tries, headers=JSON
                )
                return self._object(answer, what)
            except RegistryRefused:
                found = find()
                if found is not None:
                    return found
                raise
            except Ambiguous as exc:
                found = find()
                if found is not None:
                    return found
                if not tries.again(f"{exc.reason}; not created"):
                    raise RegistryUnavailable(
                        f"{what} failed ({exc.reason}) after {tries.text}; nothing was created",
                        "re-run later: what exists is reused",
                    ) from None


def find_version(box: Object | None, version: str) -> Object | None:
    """The version named ``version`` in a box object's ``versions``, as Packer looks it up."""
    listed = box.get("versions") if box is not None else None
    for entry in listed if isinstance(listed, list) else []:
        if isinstance(entry, dict) and entry.get("version") == version:
            return entry
    return None


def listed_providers(version: Object | None) -> set[str]:
    """The provider names a version object lists."""
    listed = version.get("providers") if version is not None else None
    return {
        str(p["name"])
        for p in (listed if isinstance(listed, list) else [])
        if isinstance(p, dict) and isinstance(p.get("name"), str)
    }


def _url_field(body: Object, key: str, what: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise RegistryRefused(
            f"the answer to the {what} has no absolute http(s) {key}",
            "check that atlas_url is a Vagrant Cloud API root",
        )
    register_url(value)  # a presigned URL or a callback is a credential: never printed
    return value
