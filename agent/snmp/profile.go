package snmp

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Profile says what of a device's MIB is configuration. Profiles are data files (YAML, or
// JSON, which YAML reads as well) in a profiles directory, one profile per file; the
// shipped ones are in configs/snmp/.
type Profile struct {
	Name        string `yaml:"name"`
	Description string `yaml:"description"`
	// Extends names profiles whose triggers, tables, traps and committer sources this one
	// adds to (a vendor profile extends mib2).
	Extends []string `yaml:"extends"`
	// Triggers are cheap scalars polled every poll interval; when one moves, the tables
	// are walked at once. sysUpTime and snmpEngineBoots are always polled with them.
	Triggers []Scalar `yaml:"triggers"`
	// Tables are the configuration subtrees; each becomes one table of the canonical state.
	Tables []*TableSpec `yaml:"tables"`
	// History is a change-history table read to learn who made a change (not state).
	History *HistorySpec `yaml:"history"`
	// Committer names scalars that say who made the latest change (not state).
	Committer *Who `yaml:"committer"`
	// Traps are the notifications that announce a configuration change.
	Traps []TrapSpec `yaml:"traps"`
}

// Scalar is one named scalar instance, e.g. ccmHistoryRunningLastChanged.0.
type Scalar struct {
	Name string `yaml:"name"`
	OID  string `yaml:"oid"`
}

// Table kinds.
const (
	KindScalars = "scalars" // a group of scalars: OID.N.0, one object per scalar
	KindTable   = "table"   // a conceptual table: entry OID.column.index, one object per row
)

// TableSpec is one configuration subtree.
type TableSpec struct {
	// Name is the canonical table's name (ifTable, system, ccmHistory).
	Name string `yaml:"name"`
	Kind string `yaml:"kind"`
	// OID is the group OID (scalars) or the entry OID (table), e.g. 1.3.6.1.2.1.2.2.1.
	OID string `yaml:"oid"`
	// Entry names a row: the Type of each row object (ifEntry). Tables only.
	Entry   string   `yaml:"entry"`
	Columns []Column `yaml:"columns"`
	// Unlisted says what happens to columns the profile does not list: "keep" (the
	// default) keeps them unless their SNMP type is volatile (Counter32, Counter64,
	// Gauge32, TimeTicks); "drop" keeps only listed columns.
	Unlisted string `yaml:"unlisted"`
	// Select keeps only the rows whose integer column has one of the values (static
	// routes, not learned ones). Tables only.
	Select *Select `yaml:"select"`
	// MaxRows bounds the varbinds one walk may return (default 10000): one walk of the
	// subtree, or of one column (see WalkRoots). A walk beyond it is an ErrWalkLimit
	// error of the target.
	MaxRows int `yaml:"max_rows"`

	byID map[uint32]*Column
}

// Column is one column of a table (or one scalar of a group), by its sub-identifier.
type Column struct {
	ID   uint32 `yaml:"id"`
	Name string `yaml:"name"`
	// Volatile columns (counters, rates, uptimes, last-used times) are dropped.
	Volatile bool `yaml:"volatile"`
	// Indicator marks a scalar that moves with every configuration change without being
	// configuration itself (the time of the last change). It is kept as an object of
	// type "indicator", so a change SNMP shows nothing else of is still seen; the
	// aggregator decides it with the other changes of its event, and a restart that
	// resets it is no change (see Watcher). Scalars only.
	Indicator bool `yaml:"indicator"`
	// Syntax renders octet strings: "" (text when printable, else hex), "hex", "mac",
	// "ip", "datetime" (DateAndTime). Integers with an Enum render as "name(n)".
	Syntax string         `yaml:"syntax"`
	Enum   map[int]string `yaml:"enum"`
}

// Ref names a value that tells who changed the configuration: a scalar instance
// (committer), a history table column, or a trap varbind's object (its OID without the
// instance).
type Ref struct {
	OID    string         `yaml:"oid"`
	Syntax string         `yaml:"syntax"`
	Enum   map[int]string `yaml:"enum"`
}

// Who lists where the user, the means (CLI, SNMP, NETCONF …) and the source address of a
// change are found.
type Who struct {
	User    *Ref `yaml:"user"`
	Source  *Ref `yaml:"source"`
	Address *Ref `yaml:"address"`
}

// HistorySpec is a change-history table such as ccmHistoryEventTable. Its newest row
// that Select accepts names who made the latest change. Rows it does not accept (a
// backup copying the running configuration to a server) are not changes.
type HistorySpec struct {
	// OID is the entry OID; the Who references are its columns (entry.column).
	OID    string  `yaml:"oid"`
	Select *Select `yaml:"select"`
	Who    `yaml:",inline"`
}

// Select accepts history rows whose integer column Column has one of Values.
type Select struct {
	Column uint32 `yaml:"column"`
	Values []int  `yaml:"values"`
}

// TrapSpec is a notification that announces a configuration change.
type TrapSpec struct {
	Name string `yaml:"name"`
	OID  string `yaml:"oid"`
	Who  `yaml:",inline"`
}

// Profiles is a set of loaded profiles by name.
type Profiles map[string]*Profile

// LoadProfiles reads every *.yaml, *.yml and *.json file in dir as one profile.
func LoadProfiles(dir string) (Profiles, error) {
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("profiles: %w", err)
	}
	ps, err := LoadProfilesFS(os.DirFS(dir))
	if err != nil {
		return nil, fmt.Errorf("profiles %s: %w", dir, err)
	}
	return ps, nil
}

// LoadProfilesFS reads every *.yaml, *.yml and *.json file at the top of fsys as one
// profile (the embedded shipped profiles, or a directory).
func LoadProfilesFS(fsys fs.FS) (Profiles, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, err
	}
	ps := Profiles{}
	for _, e := range entries {
		ext := filepath.Ext(e.Name())
		if e.IsDir() || (ext != ".yaml" && ext != ".yml" && ext != ".json") {
			continue
		}
		b, err := fs.ReadFile(fsys, e.Name())
		if err != nil {
			return nil, err
		}
		p, err := parseProfile(e.Name(), b)
		if err != nil {
			return nil, err
		}
		if _, dup := ps[p.Name]; dup {
			return nil, fmt.Errorf("%w: %s: profile %q defined twice", ErrProfile, e.Name(), p.Name)
		}
		ps[p.Name] = p
	}
	return ps, nil
}

// ParseProfile reads one profile file. Unknown keys are errors.
func ParseProfile(path string) (*Profile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("profile: %w", err)
	}
	return parseProfile(filepath.Base(path), b)
}

func parseProfile(name string, b []byte) (*Profile, error) {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var p Profile
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrProfile, name, err)
	}
	if p.Name == "" {
		return nil, fmt.Errorf("%w: %s: no name", ErrProfile, name)
	}
	if err := p.check(); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrProfile, name, err)
	}
	return &p, nil
}

// Overlay returns the profiles of ps with those of over added; a profile of over
// replaces the one of ps with the same name.
func (ps Profiles) Overlay(over Profiles) Profiles {
	out := make(Profiles, len(ps)+len(over))
	maps.Copy(out, ps)
	maps.Copy(out, over)
	return out
}

// Names lists the profiles' names in order.
func (ps Profiles) Names() []string { return slices.Sorted(maps.Keys(ps)) }

// check validates the profile's own fields (not what it extends) and normalizes OIDs.
func (p *Profile) check() error {
	var errs []error
	for i := range p.Triggers {
		s := &p.Triggers[i]
		if s.Name == "" {
			errs = append(errs, fmt.Errorf("trigger %d has no name", i))
		}
		s.OID, errs = normOID(s.OID, "trigger "+s.Name, errs)
	}
	for _, t := range p.Tables {
		errs = append(errs, t.check()...)
	}
	if h := p.History; h != nil {
		h.OID, errs = normOID(h.OID, "history", errs)
		errs = h.Who.check("history", errs)
	}
	if p.Committer != nil {
		errs = p.Committer.check("committer", errs)
	}
	for i := range p.Traps {
		tr := &p.Traps[i]
		tr.OID, errs = normOID(tr.OID, "trap "+tr.Name, errs)
		errs = tr.Who.check("trap "+tr.Name, errs)
	}
	return errors.Join(errs...)
}

func (t *TableSpec) check() []error {
	var errs []error
	if t.Name == "" || strings.ContainsAny(t.Name, " \t\n\"") {
		errs = append(errs, fmt.Errorf("table name %q: want one word", t.Name))
	}
	switch t.Kind {
	case KindScalars:
	case KindTable:
		if t.Entry == "" || strings.ContainsAny(t.Entry, " \t\n\"") {
			errs = append(errs, fmt.Errorf("table %s: entry %q: want one word", t.Name, t.Entry))
		}
	default:
		errs = append(errs, fmt.Errorf("table %s: kind %q: want scalars or table", t.Name, t.Kind))
	}
	switch t.Unlisted {
	case "":
		t.Unlisted = "keep"
	case "keep", "drop":
	default:
		errs = append(errs, fmt.Errorf("table %s: unlisted %q: want keep or drop", t.Name, t.Unlisted))
	}
	if t.MaxRows <= 0 {
		t.MaxRows = 10000
	}
	t.OID, errs = normOID(t.OID, "table "+t.Name, errs)
	t.byID = map[uint32]*Column{}
	names := map[string]bool{}
	for i := range t.Columns {
		c := &t.Columns[i]
		switch {
		case c.ID == 0:
			errs = append(errs, fmt.Errorf("table %s: column %q has no id", t.Name, c.Name))
		case c.Name == "" || strings.ContainsAny(c.Name, " \t\n\"="):
			errs = append(errs, fmt.Errorf("table %s: column %d: name %q: want one word", t.Name, c.ID, c.Name))
		case t.byID[c.ID] != nil:
			errs = append(errs, fmt.Errorf("table %s: column %d listed twice", t.Name, c.ID))
		case names[c.Name]:
			errs = append(errs, fmt.Errorf("table %s: column name %s listed twice", t.Name, c.Name))
		}
		if !validSyntax(c.Syntax) {
			errs = append(errs, fmt.Errorf("table %s: column %s: syntax %q", t.Name, c.Name, c.Syntax))
		}
		if c.Indicator && (t.Kind != KindScalars || c.Volatile) {
			errs = append(errs, fmt.Errorf("table %s: column %s: indicator is for scalars that "+
				"are not volatile", t.Name, c.Name))
		}
		t.byID[c.ID] = c
		names[c.Name] = true
	}
	return errs
}

// WalkRoots are the OIDs walked to read the table. A conceptual table that keeps only
// its listed columns ("unlisted: drop") is read column by column: the listed columns
// that are configuration and the select column. Routing tables carry a dozen columns
// per row, most of them neither, and a device answers a third as many varbinds this
// way. When every listed column is volatile, the first one is walked, so that which
// rows exist is still known. Other tables and groups are walked whole.
func (t *TableSpec) WalkRoots() []string {
	if t.Kind != KindTable || t.Unlisted != "drop" || len(t.Columns) == 0 {
		return []string{t.OID}
	}
	ids := map[uint32]bool{}
	for _, c := range t.Columns {
		if !c.Volatile {
			ids[c.ID] = true
		}
	}
	if t.Select != nil {
		ids[t.Select.Column] = true
	}
	if len(ids) == 0 {
		first := t.Columns[0].ID
		for _, c := range t.Columns {
			first = min(first, c.ID)
		}
		ids[first] = true
	}
	roots := make([]string, 0, len(ids))
	for _, id := range slices.Sorted(maps.Keys(ids)) {
		roots = append(roots, t.OID+"."+strconv.FormatUint(uint64(id), 10))
	}
	return roots
}

func (w *Who) check(what string, errs []error) []error {
	for _, r := range []*Ref{w.User, w.Source, w.Address} {
		if r == nil {
			continue
		}
		r.OID, errs = normOID(r.OID, what, errs)
		if !validSyntax(r.Syntax) {
			errs = append(errs, fmt.Errorf("%s: syntax %q", what, r.Syntax))
		}
	}
	return errs
}

func validSyntax(s string) bool {
	switch s {
	case "", "text", "hex", "mac", "ip", "datetime":
		return true
	}
	return false
}

// normOID strips a leading dot and checks that s is a dotted numeric OID.
func normOID(s, what string, errs []error) (string, []error) {
	s = strings.TrimPrefix(s, ".")
	if _, err := parseOID(s); err != nil {
		return s, append(errs, fmt.Errorf("%s: oid %q: %v", what, s, err))
	}
	return s, errs
}

// Resolve returns the named profile with everything it extends merged in: triggers,
// tables and traps of the extended profiles first, then its own. A table defined twice,
// a cycle, or an unknown name is an error.
func (ps Profiles) Resolve(name string) (*Profile, error) {
	out := &Profile{Name: name}
	seen := map[string]bool{}
	tables := map[string]bool{}
	var visit func(n string, path []string) error
	visit = func(n string, path []string) error {
		if slices.Contains(path, n) {
			return fmt.Errorf("%w: profile %s extends itself through %s", ErrProfile, name,
				strings.Join(append(path, n), " > "))
		}
		if seen[n] {
			return nil
		}
		p, ok := ps[n]
		if !ok {
			return fmt.Errorf("%w: no profile named %q", ErrProfile, n)
		}
		for _, e := range p.Extends {
			if err := visit(e, append(path, n)); err != nil {
				return err
			}
		}
		seen[n] = true
		if n == name {
			out.Description = p.Description
		}
		out.Triggers = append(out.Triggers, p.Triggers...)
		for _, t := range p.Tables {
			if tables[t.Name] {
				return fmt.Errorf("%w: profile %s: table %s defined twice", ErrProfile, name, t.Name)
			}
			tables[t.Name] = true
			out.Tables = append(out.Tables, t)
		}
		out.Traps = append(out.Traps, p.Traps...)
		// The most specific profile's committer sources win.
		if p.History != nil {
			out.History = p.History
		}
		if p.Committer != nil {
			out.Committer = p.Committer
		}
		return nil
	}
	if err := visit(name, nil); err != nil {
		return nil, err
	}
	return out, nil
}

// parseOID parses a dotted numeric OID without a leading dot.
func parseOID(s string) ([]uint32, error) {
	if s == "" {
		return nil, errors.New("empty")
	}
	parts := strings.Split(s, ".")
	out := make([]uint32, len(parts))
	for i, p := range parts {
		n, err := strconv.ParseUint(p, 10, 32)
		if err != nil || (len(p) > 1 && p[0] == '0') {
			return nil, fmt.Errorf("sub-identifier %q", p)
		}
		out[i] = uint32(n)
	}
	return out, nil
}

// compareOID orders OIDs as SNMP does: sub-identifier by sub-identifier, a prefix first.
func compareOID(a, b []uint32) int { return slices.Compare(a, b) }
