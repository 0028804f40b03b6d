//! Outbound federation: server discovery, key fetching, signed requests and the
//! per-destination sender.
