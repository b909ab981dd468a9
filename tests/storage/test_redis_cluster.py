"""The store contract on a Redis Cluster of three masters (``redis+cluster://``): a representative
part of the contract tests of the other backends, run here on ``RedisStore`` over the cluster,
where an endpoint's keys and the global indexes live on different masters."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.helpers.ports import free_tcp_port
from tests.helpers.redis import RedisCluster
from tests.helpers.stores import redis_store
from tests.storage import (
    test_bootstrap_configs,
    test_dtls_session_store,
    test_expiry,
    test_queued_requests,
    test_security_store,
    test_stores,
)
from tests.storage.test_stores import Factory, obs, reg

from lwm2m.storage.base import HistoryRetention
from lwm2m.storage.redis import RedisStore

# The contract tests run here, with this module's fixtures: a store on the cluster.
test_add_get = test_stores.test_add_get
test_new_registration_replaces_the_endpoints_old_one = (
    test_stores.test_new_registration_replaces_the_endpoints_old_one
)
test_registration_id_of_another_endpoint_is_refused = (
    test_stores.test_registration_id_of_another_endpoint_is_refused
)
test_update = test_stores.test_update
test_remove = test_stores.test_remove
test_expired = test_stores.test_expired
test_pages_in_endpoint_order = test_stores.test_pages_in_endpoint_order
test_pages_with_a_prefix_and_a_filter = test_stores.test_pages_with_a_prefix_and_a_filter
test_observations = test_stores.test_observations
test_observation_moving_to_another_endpoint = test_stores.test_observation_moving_to_another_endpoint
test_history_query_order_path_and_time = test_stores.test_history_query_order_path_and_time
test_history_count_retention = test_stores.test_history_count_retention
test_history_age_retention = test_stores.test_history_age_retention
test_history_add_is_seen_at_once_and_keeps_arrival_order = (
    test_stores.test_history_add_is_seen_at_once_and_keeps_arrival_order
)
test_update_re_register_and_remove_move_the_expiry = (
    test_expiry.test_update_re_register_and_remove_move_the_expiry
)
test_remove_expired_takes_a_batch = test_expiry.test_remove_expired_takes_a_batch
test_equal_expiry_times_are_all_answered_once = test_expiry.test_equal_expiry_times_are_all_answered_once
test_put_get_remove = test_security_store.test_put_get_remove
test_raw_public_key_entries = test_security_store.test_raw_public_key_entries
test_sessions_are_taken_once = test_dtls_session_store.test_sessions_are_taken_once
test_a_save_replaces_what_was_kept = (
    test_dtls_session_store.test_a_save_replaces_what_was_kept_and_keeps_one_session_per_address_and_cid
)

test_queued_requests_in_order = test_queued_requests.test_a_request_is_kept_as_its_call_and_listed_in_order
test_a_queued_request_is_taken_once = test_queued_requests.test_a_request_is_taken_once_and_its_outcome_kept
test_racing_takers_get_a_request_once = test_queued_requests.test_racing_takers_get_a_request_once


@pytest.fixture
def make_store(request: pytest.FixtureRequest) -> Iterator[Factory]:
    opened: list[RedisStore] = []

    def make(retention: HistoryRetention | None = None) -> RedisStore:
        store = redis_store(request, "redis-cluster", retention)
        opened.append(store)
        return store

    yield make
    for s in opened:
        s.close()


@pytest.fixture
def store(make_store: Factory) -> RedisStore:
    return make_store()  # type: ignore[return-value]


async def test_bootstrap_configurations(store: RedisStore) -> None:
    await test_bootstrap_configs.test_put_get_replace_remove_all(store.bootstrap_configs)


async def test_one_endpoints_keys_are_on_one_master_and_the_indexes_elsewhere(store: RedisStore) -> None:
    await store.registrations.add(reg("dev"))
    await store.observations.add(obs(b"t", "dev"))
    client = store.link.client()
    own = {client.keyslot(k) for k in ("lwm2m:reg:{dev}", "lwm2m:obs:{dev}", "lwm2m:hist:{dev}")}
    assert len(own) == 1
    assert client.keyslot("lwm2m:regid:r1") not in own  # an index: on whichever master it hashes to
    assert client.keyslot("lwm2m:reg:{other}") not in own


async def test_a_url_naming_several_nodes_opens_when_its_first_is_down(
    redis_cluster_session: RedisCluster, redis_cluster_url: str
) -> None:
    # The first node named is a port nobody listens on: the client learns the cluster from the next.
    ports = ",".join(f"127.0.0.1:{node.port}" for node in redis_cluster_session.nodes)
    store = RedisStore(f"redis+cluster://127.0.0.1:{free_tcp_port()},{ports}")
    try:
        await store.registrations.add(reg("dev"))
        assert (await store.registrations.get("dev")) == reg("dev")
    finally:
        store.close()
