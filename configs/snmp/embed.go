// Package snmp carries the shipped SNMP profiles (the YAML files beside this one) inside
// the agent binary, so a fresh install and a source checkout watch SNMP targets without a
// profiles directory. A profiles directory adds profiles and replaces shipped ones of the
// same name (agent/snmp_config.go).
package snmp

import "embed"

// Profiles holds every shipped profile file at its base name (mib2.yaml, cisco-ios.yaml …).
//
//go:embed *.yaml
var Profiles embed.FS
