// Package nftparse reads planned rules written in nft syntax and produces the canonical
// text the agent's reader produces for the same rule once it is loaded into the kernel:
// the text `nft -s list ruleset` prints.
//
// It does what nft itself does between the command line and the listing: the rule is
// parsed, its constants are typed by what they are compared with (service and protocol
// names, addresses, prefixes, ranges, flags), the protocol dependencies nft adds are
// added, anonymous sets are built (sorted, intervals merged), and the result is encoded
// as the nf_tables netlink expressions nft would send. Those expressions are rendered by
// shared/nftcanon, the code that renders what the agent reads back, so dependency
// elision, default omission and value formatting are the same on both sides by
// construction.
//
// The grammar covered is the common one: ip / ip6 / inet / arp / bridge / netdev payload
// matches, tcp / udp / icmp / icmpv6 fields, meta and ct keys, anonymous and named sets
// and maps, concatenations, bitwise operations, verdicts (jump, goto, return, reject,
// vmap), nat statements, counter, log, limit, quota, comment, and more. Input it cannot
// read is reported as an *Error with the position of the offending token.
//
// The package is pure: no I/O, no logging.
package nftparse
