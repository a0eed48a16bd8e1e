// Package nftcanon turns what the kernel answers to nf_tables dump requests into
// Fenceline's canonical ruleset model (shared/ruleset). It is pure: no I/O, no logging.
// The agent's reader (agent/nft) does the netlink requests and hands the raw messages
// over in a Dump; tests replay recorded dumps.
//
// Every rule gets the text `nft -s list ruleset` (nft 1.0.6) prints for it. Rules are read
// the way nft reads them back: expressions are decoded (with google/nftables' expr types
// where those are complete, from the netlink attributes otherwise), register contents
// are tracked into statements, payload loads are named after header fields by the
// protocol context, masks fold into fields, prefixes and flag tests, and the protocol
// matches nft adds as dependencies are dropped again. What the package cannot print as
// nft does is kept in a lossless fallback form, `[expr NAME HEX]`, and counted in
// Rule.Undecoded, so digests and diffs stay exact.
//
// Volatile state never reaches the model's configuration fields: counter and quota
// usage, rule handles (kept in Rule.Handle, which digests ignore), element expiry
// countdowns, and the order in which the kernel lists set elements. Elements of sets
// that traffic fills (flag dynamic, or the target of an add/update statement) are kept
// but marked Set.Dynamic, which digests ignore.
//
// The agent follows a ruleset in a State: a read renders each rule as its dump part
// arrives (StateRead) and keeps per rule only its place and rendered form, not its
// message; State.Apply moves it by the messages the kernel multicasts for each committed
// generation, and State.Build makes the model of the result, rendering only the new
// rules and sharing with the last model every chain and set the generation did not
// touch, so that the agent describes every generation at the cost of what it changed.
// Dump.Apply and BuildCached do the same on whole dumps (tests, recordings).
//
// Measured against nft 1.0.6 on every corpus group (agent/nft/CONFORMANCE.md): all rules
// of the curated, BIG, and tests/py groups and all but one of the shell-test dumps (an nft
// printing bug) render as nft prints them. Known gaps: VLAN tags stacked deeper than two,
// `typeof` sets keyed by extension headers, socket, rt, fib or hash expressions (printed
// with `type`), binding chains referenced from verdict map elements, and `meta hour` /
// `meta time`, which print in UTC where nft uses the local time zone.
package nftcanon
