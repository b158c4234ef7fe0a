"""ClientStore on SQL. Tuples and sets are JSON text, so one schema fits both databases."""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tokenward.core.records import ClientRecord
from tokenward.store.sql.engine import reading
from tokenward.store.sql.models import ClientRow, dump_strings, load_strings, upsert


class SqlClientStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def get(self, client_id: str) -> ClientRecord | None:
        async with self._sessions() as session:
            await reading(session)
            row = await session.get(ClientRow, client_id)
            return None if row is None else record_of(row)

    async def put(self, client: ClientRecord) -> None:
        async with self._sessions.begin() as session:
            await session.execute(upsert(session, ClientRow, [_values(client)], "client_id"))

    async def list_all(self) -> Sequence[ClientRecord]:
        async with self._sessions() as session:
            rows = await session.scalars(select(ClientRow))
            # Code point order, as in memory: ORDER BY would follow the database's collation.
            return sorted((record_of(row) for row in rows), key=lambda client: client.client_id)

    async def delete(self, client_id: str) -> bool:
        async with self._sessions.begin() as session:
            # RETURNING rather than rowcount: typed, and exact on both drivers.
            gone = await session.scalar(
                delete(ClientRow)
                .where(ClientRow.client_id == client_id)
                .returning(ClientRow.client_id)
            )
            return gone is not None


def _values(client: ClientRecord) -> dict[str, Any]:
    return {
        "client_id": client.client_id,
        "auth_method": client.auth_method,
        "grant_types": dump_strings(client.grant_types),
        "scopes": dump_strings(client.scopes, sort=True),
        "created_at": client.created_at,
        "secret_digest": client.secret_digest,
        "redirect_uris": dump_strings(client.redirect_uris),
        "post_logout_redirect_uris": dump_strings(client.post_logout_redirect_uris),
        "audience": dump_strings(client.audience),
        "token_format": client.token_format,
        "access_token_lifetime": client.access_token_lifetime,
        "refresh_token_lifetime": client.refresh_token_lifetime,
        "skip_consent": client.skip_consent,
        "dpop_required": client.dpop_required,
        "disabled": client.disabled,
        "jwks": client.jwks,
        "jwks_uri": client.jwks_uri,
        "id_token_alg": client.id_token_alg,
        "name": client.name,
        "exchange_audiences": dump_strings(client.exchange_audiences),
        "exchange_impersonation": client.exchange_impersonation,
        "tls_client_auth_subject_dn": client.tls_client_auth_subject_dn,
        "tls_client_auth_san_dns": client.tls_client_auth_san_dns,
        "tls_client_auth_san_uri": client.tls_client_auth_san_uri,
        "tls_client_auth_san_ip": client.tls_client_auth_san_ip,
        "tls_client_auth_san_email": client.tls_client_auth_san_email,
        "tls_client_certificate_bound_access_tokens": (
            client.tls_client_certificate_bound_access_tokens
        ),
        "access_token_alg": client.access_token_alg,
        "backchannel_logout_uri": client.backchannel_logout_uri,
        "backchannel_logout_session_required": client.backchannel_logout_session_required,
        "require_pushed_authorization_requests": client.require_pushed_authorization_requests,
        "require_signed_request_object": client.require_signed_request_object,
        "profile": client.profile,
        "min_acr": client.min_acr,
        "owner": client.owner,
        "approval": client.approval,
    }


def record_of(row: ClientRow | SimpleNamespace) -> ClientRecord:
    return ClientRecord(
        client_id=row.client_id,
        auth_method=row.auth_method,
        grant_types=load_strings(row.grant_types),
        scopes=frozenset(load_strings(row.scopes)),
        created_at=row.created_at,
        secret_digest=row.secret_digest,
        redirect_uris=load_strings(row.redirect_uris),
        post_logout_redirect_uris=load_strings(row.post_logout_redirect_uris),
        audience=load_strings(row.audience),
        token_format=row.token_format,
        access_token_lifetime=row.access_token_lifetime,
        refresh_token_lifetime=row.refresh_token_lifetime,
        skip_consent=row.skip_consent,
        dpop_required=row.dpop_required,
        disabled=row.disabled,
        jwks=row.jwks,
        jwks_uri=row.jwks_uri,
        id_token_alg=row.id_token_alg,
        name=row.name,
        exchange_audiences=load_strings(row.exchange_audiences),
        exchange_impersonation=row.exchange_impersonation,
        tls_client_auth_subject_dn=row.tls_client_auth_subject_dn,
        tls_client_auth_san_dns=row.tls_client_auth_san_dns,
        tls_client_auth_san_uri=row.tls_client_auth_san_uri,
        tls_client_auth_san_ip=row.tls_client_auth_san_ip,
        tls_client_auth_san_email=row.tls_client_auth_san_email,
        tls_client_certificate_bound_access_tokens=row.tls_client_certificate_bound_access_tokens,
        access_token_alg=row.access_token_alg,
        backchannel_logout_uri=row.backchannel_logout_uri,
        backchannel_logout_session_required=row.backchannel_logout_session_required,
        require_pushed_authorization_requests=row.require_pushed_authorization_requests,
        require_signed_request_object=row.require_signed_request_object,
        profile=row.profile,
        min_acr=row.min_acr,
        owner=row.owner,
        approval=row.approval,
    )
