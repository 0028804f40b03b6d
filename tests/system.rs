//! System tests: each drives a real Neurite worker under `wrangler dev` over HTTP.
//! One binary, so the shared server starts once for all of them.

#[path = "system/harness.rs"]
#[allow(dead_code)] // helpers used by later test modules
mod harness;

#[path = "system/foundation.rs"]
mod foundation;

#[path = "system/accounts.rs"]
mod accounts;

#[path = "system/accounts_admin.rs"]
mod accounts_admin;

#[path = "system/accounts_manage.rs"]
mod accounts_manage;

#[path = "system/rooms.rs"]
mod rooms;

#[path = "system/rooms_more.rs"]
mod rooms_more;

#[path = "system/room_input.rs"]
mod room_input;

#[path = "system/e2ee.rs"]
mod e2ee;

#[path = "system/e2ee_cross_signing_backup.rs"]
mod e2ee_cross_signing_backup;
#[path = "system/sync.rs"]
mod sync;

#[path = "system/push_rules.rs"]
mod push_rules;

#[path = "system/conformance.rs"]
mod conformance;

#[path = "system/crash.rs"]
mod crash;
#[path = "system/crash_views.rs"]
mod crash_views;

#[path = "system/conformance_more.rs"]
mod conformance_more;

#[path = "system/guests.rs"]
mod guests;

#[path = "system/legacy.rs"]
mod legacy;

#[path = "system/conformance_presence.rs"]
mod conformance_presence;

#[path = "system/third_party_invites.rs"]
mod third_party_invites;

#[path = "system/log_replay.rs"]
mod log_replay;

#[path = "system/soak.rs"]
mod soak;

#[path = "system/room_input_dag.rs"]
mod room_input_dag;

#[path = "system/remote.rs"]
#[allow(dead_code)] // scripted answers used by some tests only
mod remote;

#[path = "system/federation.rs"]
mod federation;

#[path = "system/federation_send.rs"]
mod federation_send;

#[path = "../bench/synapse.rs"]
#[allow(dead_code)] // the benchmark's Synapse, here in its federating mode
mod synapse;

#[path = "system/synapse_interop.rs"]
mod synapse_interop;

#[path = "system/federation_rooms.rs"]
mod federation_rooms;

#[path = "system/federation_invites.rs"]
mod federation_invites;

#[path = "system/federation_joins.rs"]
mod federation_joins;

#[path = "system/two_neurites.rs"]
mod two_neurites;

#[path = "system/synapse_rooms.rs"]
mod synapse_rooms;

#[path = "system/restricted_joins.rs"]
mod restricted_joins;

#[path = "system/synapse_spaces.rs"]
mod synapse_spaces;

#[path = "system/bad_peers.rs"]
mod bad_peers;

#[path = "system/remote_devices.rs"]
mod remote_devices;

#[path = "system/media.rs"]
mod media;

#[path = "system/media_more.rs"]
mod media_more;

#[path = "system/media_remote.rs"]
mod media_remote;

#[path = "system/tags.rs"]
mod tags;

#[path = "system/reports.rs"]
mod reports;

#[path = "system/user_directory.rs"]
mod user_directory;

#[path = "system/spaces.rs"]
mod spaces;

#[path = "system/search.rs"]
mod search;
