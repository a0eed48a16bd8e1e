// Package snmp watches firewalls that cannot host an agent (Cisco ASA and IOS,
// FortiGate, Juniper SRX, Palo Alto, MikroTik, anything with MIB-2) over SNMP and turns
// their configuration into the same canonical model the nftables reader produces, so that
// digests, diffs, events and the deviation engine work unchanged.
//
// # The canonical state of an SNMP device
//
// A profile (profile.go; data files in configs/snmp/) lists a device's configuration
// subtrees. Each becomes one ruleset.Table with Family "snmp" and the subtree's name:
//
//	table snmp ifTable {                    one table per profile subtree
//		ifEntry 3 {                         one Object per row: Type = the entry name,
//			ifDescr = "GigabitEthernet0/3"      Name = the row's index (OID suffix)
//			ifAdminStatus = up(1)           Spec = "column = value", by column id;
//		}                                   volatile columns are not there
//	}
//	table snmp system {
//		scalar sysName {                    a group of scalars: Type "scalar",
//			"fw-branch-1"                       Name = the scalar, Spec = [value]
//		}
//	}
//
// Rows are objects rather than rules or set elements because ruleset.Diff reports a
// changed object as one object_changed Change naming it, with the whole row before and
// after:
//
//	{kind: object_changed, family: snmp, table: ifTable, object: "ifEntry 3",
//	 before: "ifDescr = \"Gi0/3\"; ifAdminStatus = up(1)",
//	 after:  "ifDescr = \"Gi0/3\"; ifAdminStatus = down(2)"}
//
// A new row is object_added, a vanished one object_removed. A row exists when any of its
// columns answers, even when every column it has is volatile (which firewall policies
// exist is configuration even if the table only carries hit counters).
//
// Values are rendered canonically (value.go): integers in decimal, "name(n)" with an
// enumeration, printable octet strings as Go-quoted ASCII, others as 0x-hex, or as the
// column's syntax says (mac, ip, datetime); OIDs and addresses dotted.
//
// What is volatile is explicit: a column marked volatile in the profile, or, for columns
// the profile does not list, any Counter32, Counter64, Gauge32 or TimeTicks value. A
// table's "unlisted: drop" keeps only the columns it lists. Volatile values never enter
// the state, so they never change the digest.
//
// Devices that do not expose their configuration itself (Cisco's running-config) expose
// when it last changed: ccmHistoryRunningLastChanged, jnxCmCfgChgLatestDate. The
// profiles keep such a scalar in the state, so a configuration change is one
// object_changed Change of that scalar (plus the visible effects, such as an interface
// shut down). Change-history tables (ccmHistoryEventTable) are not state: they log
// backups as well as changes and roll over; they are read only to learn who made a
// change, from their newest row that the profile's select accepts.
//
// # Polling
//
// Every poll interval one GET reads sysUpTime, snmpEngineBoots and the profile's trigger
// scalars (cheap change indicators). When a trigger moves, when a config-change trap
// arrives, when the device restarted, and on a slow backstop timer, the configuration
// tables are walked. A snapshot is consistent: the triggers must read the same before
// and after the walks, and a state that differs from the one last reported must read the
// same twice, so a table changing mid-walk is never reported half old and half new.
//
// Walks are strict (client.go): every OID must follow the one before (a looping agent
// stops the walk with ErrNotIncreasing), an error status is an error rather than a short
// table, and each walk is bounded in varbinds and, through the context, in time. A target
// that does not answer, answers garbage, or refuses authentication is marked unreachable:
// nothing is reported for it (not even heartbeats, so the aggregator's silence check
// raises the device as silent), the failure is logged once and counted, and it is retried
// every poll interval. The first read after it answers again is a reconcile if the
// configuration moved.
//
// A restart is seen as snmpEngineBoots changing or sysUpTime going back by other than
// its 2^32 wrap (497 days); the next read reports a moved state as a reconcile that says
// so. TimeTicks wrapping alone is not a restart. An SNMPv3 session follows a restart
// (new engine boots and time); a device replaced or reset has a new engine id, and the
// client starts a new session (engine discovery) once when a request fails
// authentication.
//
// # Traps and informs
//
// One listener (trap.go) takes v2c and v3 notifications for every target, matched by
// source address and community or v3 user. Those the target's profile lists as
// configuration changes make its watcher read at once; their varbinds say who made the
// change where the device sends that. v3 informs need the listener's own engine id
// (the agent's snmp.trap_engine_id), which the devices are configured with.
//
// # Profiles
//
// The shipped profiles (configs/snmp/*.yaml) are built into the agent; a profiles
// directory adds site profiles and replaces shipped ones of the same name.
package snmp
