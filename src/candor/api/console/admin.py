"""Collections and their people, and access keys: counts and retention per collection, a
retention period set, an erasure with its receipt, keys created (the secret shown once) and
revoked. Each change is one of candor's own operations run through the gate (SetRetention,
Erase, CreateAccessKey, RevokeAccessKey), so the policy decides it and the ledger records it.
Face thumbnails are served only to signed-in accounts."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import Response

from candor.api.console.web import HEADERS, Console
from candor.errors import InvalidParameter


def routes(app: Any, console: Console) -> None:
    gate, store = console.gate, console.store

    def collections_page(session, **extra):
        rows = []
        for c in store.all_collections():
            faces, users = store.collection_counts(c.id)
            rows.append({"id": c.collection_id, "owner": c.owner_org, "faces": faces,
                         "users": users, "retention": c.retention_days,
                         "thumbnails": bool(getattr(c, "keep_thumbnails", False))})
        return console.html("collections.j2", session, collections=rows, csrf=session.csrf,
                            receipt=extra.get("receipt"), done=extra.get("done"))

    @app.get("/console/collections")
    async def collections(request: Request) -> Response:
        return await console.page(request, collections_page)

    @app.post("/console/collections/retention")
    async def retention(request: Request) -> Response:
        from candor.governance.erasure import set_retention

        def run(session, form):
            coll, days = form.get("collection", ""), form.get("days", "").strip()
            if days and not (days.isdigit() and 0 < int(days) <= 36500):
                raise InvalidParameter("retention must be a number of days from 1 to 36500, "
                                       "or empty for none")
            period = int(days) if days else None
            gate.run_candor(session.principal, "SetRetention",
                            {"CollectionId": coll, "RetentionDays": period},
                            lambda: set_retention(store, gate.ledger, coll, period,
                                                  session.principal), records_itself=True)
            return collections_page(session, done=f"{coll}: retention "
                                    + (f"{period} days" if period else "none"))
        return await console.act(request, "manage", "SetRetention", run)

    @app.post("/console/collections/erase")
    async def erase(request: Request) -> Response:
        from candor.governance.erasure import erase as do_erase

        def run(session, form):
            ext, user = form.get("external_image_id", "").strip(), form.get("user_id", "").strip()
            coll = form.get("collection", "").strip() or None
            if bool(ext) == bool(user):
                raise InvalidParameter("name either an ExternalImageId or a UserId to erase")
            params = {k: v for k, v in (("ExternalImageId", ext), ("UserId", user),
                                        ("CollectionId", coll)) if v}
            receipt = gate.run_candor(
                session.principal, "Erase", params,
                lambda: do_erase(store, gate.ledger, external_image_id=ext or None,
                                 user_id=user or None, collection=coll,
                                 principal=session.principal), records_itself=True)
            return collections_page(session, receipt=receipt.to_dict())
        return await console.act(request, "manage", "Erase", run)

    @app.get("/console/faces/{face_id}/thumb.jpg")
    async def thumbnail(request: Request, face_id: str) -> Response:
        def send(session):
            data = store.thumbnail(face_id)
            if data is None:
                return Response("no thumbnail", status_code=404, headers=HEADERS)
            return Response(data, media_type="image/jpeg", headers=HEADERS)
        return await console.page(request, send)

    def keys_page(session, created=None):
        from candor.api.keys import KeyStore

        return console.html("keys.j2", session, keys=KeyStore(store).list(), created=created,
                            csrf=session.csrf)

    @app.get("/console/keys")
    async def keys(request: Request) -> Response:
        return await console.page(request, keys_page, need="see_keys")

    @app.post("/console/keys/create")
    async def create_key(request: Request) -> Response:
        from candor.api.keys import KeyStore
        from candor.governance.principal import valid_category_name

        def run(session, form):
            org, category = form.get("org", "").strip(), form.get("category", "").strip()
            if not org or not valid_category_name(category):
                raise InvalidParameter("a key needs an organisation and a category name")
            key, secret = gate.run_candor(session.principal, "CreateAccessKey",
                                          {"Org": org, "Category": category},
                                          lambda: KeyStore(store).create(org, category))
            return keys_page(session, created={"id": key.access_key_id, "secret": secret,
                                               "org": key.org, "category": key.category})
        return await console.act(request, "manage_keys", "CreateAccessKey", run)

    @app.post("/console/keys/revoke")
    async def revoke_key(request: Request) -> Response:
        from candor.api.keys import KeyStore

        def run(session, form):
            key_id = form.get("key", "")
            gate.run_candor(session.principal, "RevokeAccessKey", {"AccessKeyId": key_id},
                            lambda: KeyStore(store).revoke(key_id))
            return keys_page(session)
        return await console.act(request, "manage_keys", "RevokeAccessKey", run)
