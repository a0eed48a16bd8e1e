package nftcanon

import "github.com/fenceline/fenceline/shared/ruleset"

// Build turns a dump into the canonical model.
func Build(d *Dump) (*ruleset.Ruleset, error) {
	return &ruleset.Ruleset{}, nil
}
