// Package deviation decides what an observed ruleset change means: which approved change
// request (CR) covers it, or which deviation it raises; what a CR's window closing finds;
// and where every rule on a device came from.
//
// Everything here is a pure function of its arguments. The store calls it from inside the
// replicated state machine, so it must stay deterministic: no clock, no randomness, no
// I/O, no iteration over maps whose order could leak into the result.
package deviation

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/fenceline/fenceline/aggregator/model"
	"github.com/fenceline/fenceline/shared/ruleset"
)

// Observation is one event's changes, reduced to what the engine needs.
type Observation struct {
	Tenant string
	// Device is the device's record (its tags select CRs).
	Device   *model.Device
	EventID  string
	Seq      uint64
	Observed time.Time // the event's observed time; CR windows are checked against it
	// ObservedText is the observed time exactly as the event carried it.
	ObservedText string
	Received     time.Time
	Changes      []ruleset.Change
	// Removed holds, parallel to Changes, the origin of the rule each rule_removed change
	// takes away (nil where unknown or not a removal).
	Removed []*model.Origin
	// FirstDeviation is the number the first new deviation gets (DEV-%06d).
	FirstDeviation uint64
}

// Input is the state the engine decides against.
type Input struct {
	// CRs are the tenant's CRs in creation order; CRs are tried in that order.
	CRs []*model.CR
	// Open are the device's open and acknowledged deviations, oldest first.
	Open   []*model.Deviation
	Policy *model.Policy
	// GroupIndicators decides a change of an indicator object with the first other
	// change of its event (see group). The state machine sets it from the cluster's log
	// format, so that every node, of any version, decides an entry alike.
	GroupIndicators bool
}

// Outcome is what one change turned out to be.
type Outcome struct {
	// CR authorized the change (or its rollback).
	CR string
	// Deviation was raised for it.
	Deviation string
	// Origin is the origin an added rule takes when neither a CR nor a new deviation
	// explains it: a rule moved or put back keeps the origin it had.
	Origin *model.Origin
}

// Result is what an observation does.
type Result struct {
	// Updated holds copies of the CRs the changes touched, in creation order.
	Updated []*model.CR
	// Deviations are the new deviations, numbered from FirstDeviation, in change order.
	Deviations []model.Deviation
	// Resolved are copies of open deviations the changes resolved (a rollback observed).
	Resolved []*model.Deviation
	// Outcomes are parallel to the observation's changes.
	Outcomes []Outcome
	// Heads are parallel to the observation's changes: the index of the table or chain
	// change a change came or went with (and was decided with), or -1.
	Heads []int
}

// engine holds one evaluation's working state.
type engine struct {
	o       Observation
	in      Input
	work    []*model.CR
	touched []bool
	res     Result
	done    []bool // per change: decided
	// head is, per change, the index of the table or chain change it came or went with,
	// or -1.
	head []int
}

// Evaluate decides every change of o. In order, a change is
//  1. covered by a planned change of an approved CR for the device, in its window, not
//     yet seen on the device (or seen and rolled back), with the same action, place and
//     canonical text (and position, when the plan names one);
//  2. the rollback, inside the window, of a change a CR made on the device;
//  3. the undoing of an open unauthorized change (a rule or element put back or taken
//     away exactly; a table, chain or set created again by name is not), which resolves
//     that deviation;
//  4. a rule moved within its chain (removed and added again in one event), raised once
//     as unauthorized;
//  5. out_of_window or unapproved, when a CR plans exactly this change but is outside its
//     window or not approved (an exact plan names the CR better than a similar one);
//  6. differs_from_spec, when a CR in its window planned a similar change in the same
//     place that has not landed;
//  7. unauthorized otherwise.
//
// CRs that become complete are implemented. in is not modified.
func Evaluate(o Observation, in Input) Result {
	e := &engine{o: o, in: in, work: slices.Clone(in.CRs), touched: make([]bool, len(in.CRs)),
		done: make([]bool, len(o.Changes))}
	e.res.Outcomes = make([]Outcome, len(o.Changes))
	members := e.group()
	steps := []func(int){e.cover, e.rollback, e.undo}
	for _, step := range steps {
		for i := range o.Changes {
			if !e.done[i] {
				step(i)
			}
		}
	}
	e.moves()
	for _, step := range []func(int){e.misfit, e.differs} {
		for i := range o.Changes {
			if !e.done[i] {
				step(i)
			}
		}
	}
	for i, ch := range o.Changes {
		if !e.done[i] {
			d := e.deviation(model.Unauthorized, ch, nil, "")
			if n := members[i]; n > 0 {
				d.Detail = fmt.Sprintf("%s with %d changes inside it (rules, sets, elements) "+
					"raised as this one deviation", strings.ReplaceAll(string(ch.Kind), "_", " "), n)
			}
			if ch.Kind == ruleset.RuleRemoved && i < len(o.Removed) && o.Removed[i] != nil {
				r := *o.Removed[i]
				d.RuleOrigin = &r
			}
			e.raise(i, d)
		}
	}
	e.ungroup()
	e.res.Heads = e.head
	for i, c := range e.work {
		if !e.touched[i] {
			continue
		}
		if c.State == model.CRApproved && c.Complete() {
			c.ImplementedAt = o.Observed
			c.SetState(model.CRImplemented, model.System,
				"every planned change observed on every target device", o.Received)
			if c.Type == model.CREmergency && in.Policy != nil && c.Review == nil {
				c.ReviewDue = o.Observed.Add(in.Policy.EmergencyReviewDuration())
			}
		}
		e.res.Updated = append(e.res.Updated, c)
	}
	return e.res
}

// cr returns CR i for writing.
func (e *engine) cr(i int) *model.CR {
	if !e.touched[i] {
		e.work[i] = e.work[i].Clone()
		e.touched[i] = true
		e.work[i].UpdatedAt = e.o.Received
	}
	return e.work[i]
}

// eligible reports whether CR i authorizes changes on the device at the observed time.
func (e *engine) eligible(i int) bool {
	c := e.work[i]
	return c.Tenant == e.o.Tenant && c.State.Authorizing() && c.TargetsDevice(e.o.Device) &&
		c.InWindow(e.o.Observed)
}

func (e *engine) observe(i, j int, outcome, actual, dev string) {
	c := e.cr(i)
	p := &c.Changes[j]
	p.Observations = append(p.Observations, model.Observation{
		Device: e.o.Device.Device, Outcome: outcome, Event: e.o.EventID, Seq: e.o.Seq,
		Observed: e.o.ObservedText, Actual: actual, Deviation: dev,
	})
	if p.ObservedEvent == "" && outcome == model.Landed {
		p.ObservedEvent, p.ObservedSeq = e.o.EventID, e.o.Seq
	}
}

func (e *engine) decide(k int, out Outcome) {
	e.done[k] = true
	e.res.Outcomes[k] = out
}

// cover matches change k exactly against the planned changes of eligible CRs.
func (e *engine) cover(k int) {
	ch := e.o.Changes[k]
	for i := range e.work {
		if !e.eligible(i) {
			continue
		}
		for j := range e.work[i].Changes {
			p := &e.work[i].Changes[j]
			ob := p.On(e.o.Device.Device)
			// A config change covers every change to what it names in the window.
			again := p.Action == model.ActionConfig
			if ob != nil && ob.Outcome != model.RolledBack && !again || !Covers(*p, ch) {
				continue
			}
			switch {
			case ob == nil:
				e.observe(i, j, model.Landed, "", "")
			case ob.Outcome != model.RolledBack:
				// Seen already (a config change): covered again, nothing new to record.
			default:
				// Rolled back and put back inside the window (a rule moved by delete and
				// insert, say): the plan holds again, as of this event.
				c := e.cr(i)
				ob = c.Changes[j].On(e.o.Device.Device)
				ob.Outcome, ob.Event, ob.Seq, ob.Observed = model.Landed, e.o.EventID, e.o.Seq,
					e.o.ObservedText
				ob.UndoneEvent, ob.UndoneSeq = "", 0
			}
			e.decide(k, Outcome{CR: e.work[i].ID})
			return
		}
	}
}

// rollback recognizes change k undoing, inside the window, a change a CR made here.
func (e *engine) rollback(k int) {
	ch := e.o.Changes[k]
	undo, ok := inverse(ch)
	if !ok {
		return
	}
	dev := e.o.Device.Device
	for i := range e.work {
		if !e.eligible(i) {
			continue
		}
		for j := range e.work[i].Changes {
			p := &e.work[i].Changes[j]
			ob := p.On(dev)
			if ob == nil || ob.Outcome != model.Landed || !Covers(*p, undo) {
				continue
			}
			if ch.Kind == ruleset.RuleRemoved && k < len(e.o.Removed) && e.o.Removed[k] != nil &&
				e.o.Removed[k].CR != e.work[i].ID {
				continue // this copy of the rule has another origin
			}
			c := e.cr(i)
			ob = c.Changes[j].On(dev)
			ob.Outcome = model.RolledBack
			ob.UndoneEvent, ob.UndoneSeq = e.o.EventID, e.o.Seq
			e.decide(k, Outcome{CR: c.ID})
			return
		}
	}
}

// undo recognizes change k undoing an open unauthorized change, and resolves that
// deviation: the rollback was observed.
func (e *engine) undo(k int) {
	ch := e.o.Changes[k]
	switch ch.Kind {
	case ruleset.TableAdded, ruleset.ChainAdded, ruleset.SetAdded:
		// A table, chain or set created again under the name of one that was removed
		// does not show that it holds what was removed: it is judged on its own.
		return
	}
	undo, ok := inverse(ch)
	if !ok {
		return
	}
	for _, d := range e.in.Open {
		if d.State == model.DeviationResolved || d.Change != undo.Kind || !d.Kind.Undoable() ||
			e.resolvedAlready(d.ID) || !sameItem(d, undo) {
			continue
		}
		if ch.Kind == ruleset.RuleRemoved && k < len(e.o.Removed) && e.o.Removed[k] != nil &&
			e.o.Removed[k].Deviation != d.ID {
			continue // this copy of the rule has another origin
		}
		r := d.Clone()
		r.ResolvedBy = e.o.EventID
		r.SetState(model.DeviationResolved, model.System,
			fmt.Sprintf("undone by event %d", e.o.Seq), model.ResolvedRollback, e.o.Received)
		e.res.Resolved = append(e.res.Resolved, r)
		e.decide(k, Outcome{Origin: d.RuleOrigin})
		return
	}
}

func (e *engine) resolvedAlready(id string) bool {
	for _, r := range e.res.Resolved {
		if r.ID == id {
			return true
		}
	}
	return false
}

// ChangeMoved is the change kind of a rule that moved inside its chain: one event removed
// it at one position and added it at another.
const ChangeMoved ruleset.ChangeKind = "rule_moved"

// moves raises the rule moves the diff reported, and pairs an undecided removal and
// addition of the same rule in the same chain (a diff that did not pair them).
func (e *engine) moves() {
	removed := func(k int) *model.Origin {
		if k < len(e.o.Removed) {
			return e.o.Removed[k]
		}
		return nil
	}
	for k, mv := range e.o.Changes {
		if e.done[k] || mv.Kind != ruleset.RuleMoved {
			continue
		}
		id := e.raiseMove(mv, mv.FromPosition, mv.Position)
		e.decide(k, Outcome{Deviation: id, Origin: removed(k)})
	}
	for k, rm := range e.o.Changes {
		if e.done[k] || rm.Kind != ruleset.RuleRemoved {
			continue
		}
		for a, ad := range e.o.Changes {
			if e.done[a] || ad.Kind != ruleset.RuleAdded || ad.Family != rm.Family ||
				ad.Table != rm.Table || ad.Chain != rm.Chain || ad.Rule != rm.Rule {
				continue
			}
			mv := ad
			mv.Kind = ChangeMoved
			id := e.raiseMove(mv, rm.Position, ad.Position)
			e.decide(k, Outcome{Deviation: id})
			e.decide(a, Outcome{Deviation: id, Origin: removed(k)})
			break
		}
	}
}

// raiseMove raises one unauthorized deviation for rule mv moved from one position to
// another, and returns its id.
func (e *engine) raiseMove(mv ruleset.Change, from, to int) string {
	mv.Before, mv.After = fmt.Sprintf("position %d", from), fmt.Sprintf("position %d", to)
	d := e.deviation(model.Unauthorized, mv, nil, "")
	d.Detail = fmt.Sprintf("rule moved from position %d to %d", from, to)
	return e.add(d)
}

// differs matches change k against similar planned changes that have not landed.
func (e *engine) differs(k int) {
	ch := e.o.Changes[k]
	dev := e.o.Device.Device
	for i := range e.work {
		if !e.eligible(i) {
			continue
		}
		for j := range e.work[i].Changes {
			p := &e.work[i].Changes[j]
			if p.On(dev) != nil {
				continue
			}
			fields, ok := Similar(*p, ch)
			if !ok {
				continue
			}
			d := e.deviation(model.DiffersFromSpec, ch, p, e.work[i].ID)
			d.Fields = fields
			d.Detail = fmt.Sprintf("%s planned change %d landed differently", e.work[i].ID, j+1)
			id := e.add(d)
			e.observe(i, j, model.LandedDifferently, actualText(ch), id)
			e.decide(k, Outcome{Deviation: id})
			return
		}
	}
}

// misfit raises out_of_window or unapproved when a CR plans exactly change k.
func (e *engine) misfit(k int) {
	ch := e.o.Changes[k]
	for _, c := range e.work {
		if c.Tenant != e.o.Tenant || !c.TargetsDevice(e.o.Device) {
			continue
		}
		for j := range c.Changes {
			p := &c.Changes[j]
			if !Covers(*p, ch) {
				continue
			}
			kind := model.Unapproved
			why := c.ID + " plans this change but is " + string(c.State)
			switch c.State {
			case model.CRApproved, model.CRImplemented, model.CRVerified, model.CRFailed,
				model.CRClosed:
				kind = model.OutOfWindow
				why = fmt.Sprintf("%s plans this change for %s to %s", c.ID,
					c.WindowStart.Format(time.RFC3339), c.WindowEnd.Format(time.RFC3339))
				if c.InWindow(e.o.Observed) {
					// In the window, but the plan was used up: it happened once more.
					kind = model.Unauthorized
					why = c.ID + " planned this change once; it was observed again"
				}
			}
			d := e.deviation(kind, ch, p, c.ID)
			d.Detail = why
			e.raise(k, d)
			return
		}
	}
}

func (e *engine) raise(k int, d model.Deviation) {
	e.decide(k, Outcome{Deviation: e.add(d)})
}

// add numbers a new deviation and returns its id.
func (e *engine) add(d model.Deviation) string {
	d.ID = DeviationID(e.o.FirstDeviation + uint64(len(e.res.Deviations)))
	e.res.Deviations = append(e.res.Deviations, d)
	return d.ID
}

// DeviationID is the id of the tenant's n-th deviation.
func DeviationID(n uint64) string { return fmt.Sprintf("DEV-%06d", n) }

func (e *engine) deviation(kind model.DeviationKind, ch ruleset.Change, p *model.PlannedChange,
	cr string) model.Deviation {
	d := model.Deviation{
		Tenant: e.o.Tenant, Kind: kind, State: model.DeviationOpen, Device: e.o.Device.Device,
		Change: ch.Kind, Family: ch.Family, Table: ch.Table, Chain: ch.Chain,
		Position: ch.Position, Rule: ch.Rule, Set: ch.Set, Element: ch.Element,
		Object: ch.Object, Before: ch.Before, After: ch.After, CR: cr,
		EventID: e.o.EventID, Seq: e.o.Seq, Observed: e.o.ObservedText, Raised: e.o.Received,
	}
	if p != nil {
		d.Planned = p.Describe()
	}
	return d
}

// actionOf maps a change kind to the planned action it would fulfil.
func actionOf(k ruleset.ChangeKind) string {
	switch k {
	case ruleset.RuleAdded:
		return model.ActionAdd
	case ruleset.RuleRemoved:
		return model.ActionDelete
	case ruleset.ElementAdded:
		return model.ActionAddElement
	case ruleset.ElementRemoved:
		return model.ActionDeleteElement
	case ruleset.ChainPolicy:
		return model.ActionPolicy
	}
	return ""
}

// where is the "family table name" of the chain or set a change is in.
func where(ch ruleset.Change) string {
	if ch.Kind == ruleset.ElementAdded || ch.Kind == ruleset.ElementRemoved {
		return ch.Family + " " + ch.Table + " " + ch.Set
	}
	return ch.Family + " " + ch.Table + " " + ch.Chain
}

var policyRE = regexp.MustCompile(`policy (\w+);`)

// PolicyOf returns the policy in a base chain's header, or "".
func PolicyOf(header string) string {
	if m := policyRE.FindStringSubmatch(header); m != nil {
		return m[1]
	}
	return ""
}

// actualText is what landed, as the change says.
func actualText(ch ruleset.Change) string {
	switch ch.Kind {
	case ruleset.ElementAdded, ruleset.ElementRemoved:
		return ch.Element
	case ruleset.ChainPolicy:
		return PolicyOf(ch.After)
	}
	return ch.Rule
}

// Covers reports whether planned change p describes the observed change ch exactly: the
// matching action, the same "family table chain" (or set), the same canonical text (or,
// for plans stored without one, the same text with whitespace collapsed), and the same
// position when the plan names one.
func Covers(p model.PlannedChange, ch ruleset.Change) bool {
	if p.Action == model.ActionConfig {
		switch ch.Kind {
		case ruleset.ObjectAdded, ruleset.ObjectRemoved, ruleset.ObjectChanged:
			return p.Object == "" || p.Text() == model.NormalizeText(ch.Object)
		case ruleset.TableAdded, ruleset.TableRemoved, ruleset.TableChanged:
			return p.Object == ""
		}
		return false
	}
	if actionOf(ch.Kind) != p.Action || p.Where() != where(ch) {
		return false
	}
	switch p.Action {
	case model.ActionPolicy:
		return p.Policy == PolicyOf(ch.After)
	case model.ActionAdd:
		if p.Position > 0 && p.Position != ch.Position {
			return false
		}
	}
	got := actualText(ch)
	if p.Canonical != "" {
		return p.Canonical == got
	}
	return p.Text() == model.NormalizeText(got)
}

// inverse is the change that undoes ch.
func inverse(ch ruleset.Change) (ruleset.Change, bool) {
	out := ch
	switch ch.Kind {
	case ruleset.RuleAdded:
		out.Kind = ruleset.RuleRemoved
	case ruleset.RuleRemoved:
		out.Kind = ruleset.RuleAdded
	case ruleset.ElementAdded:
		out.Kind = ruleset.ElementRemoved
	case ruleset.ElementRemoved:
		out.Kind = ruleset.ElementAdded
	case ruleset.ChainPolicy, ruleset.ObjectChanged:
		out.Before, out.After = ch.After, ch.Before
	case ruleset.TableAdded:
		out.Kind = ruleset.TableRemoved
	case ruleset.TableRemoved:
		out.Kind = ruleset.TableAdded
	case ruleset.ChainAdded:
		out.Kind = ruleset.ChainRemoved
	case ruleset.ChainRemoved:
		out.Kind = ruleset.ChainAdded
	case ruleset.SetAdded:
		out.Kind = ruleset.SetRemoved
	case ruleset.SetRemoved:
		out.Kind = ruleset.SetAdded
	default:
		return ch, false
	}
	return out, true
}

// sameItem reports whether deviation d is about the item that change ch (the change d
// recorded, reconstructed from its undoing) touches.
func sameItem(d *model.Deviation, ch ruleset.Change) bool {
	if d.Family != ch.Family || d.Table != ch.Table || d.Chain != ch.Chain {
		return false
	}
	switch ch.Kind {
	case ruleset.RuleAdded, ruleset.RuleRemoved:
		return d.Rule == ch.Rule
	case ruleset.ElementAdded, ruleset.ElementRemoved:
		return d.Set == ch.Set && d.Element == ch.Element
	case ruleset.ChainPolicy:
		return d.After == ch.After && d.Before == ch.Before
	case ruleset.ObjectChanged:
		return d.Object == ch.Object && d.After == ch.After && d.Before == ch.Before
	case ruleset.SetAdded, ruleset.SetRemoved:
		return d.Set == ch.Set
	}
	return true
}

// group finds the changes that came or went with a whole table or chain (a table deleted
// takes its chains, rules, sets and elements with it) and takes them out of the
// evaluation: the table or chain change stands for all of them and raises one deviation.
// It returns, per head change, how many changes it stands for. With
// Input.GroupIndicators, a change of an indicator object (ruleset.IndicatorType) goes
// with the first other change of its event the same way (a CR for that change covers
// it), without counting as inside it.
func (e *engine) group() map[int]int {
	e.head = make([]int, len(e.o.Changes))
	for i := range e.head {
		e.head[i] = -1
	}
	if e.in.GroupIndicators {
		defer e.groupIndicators()
	}
	type key struct{ fam, table, chain string }
	heads := map[key]int{}
	for i, ch := range e.o.Changes {
		switch ch.Kind {
		case ruleset.TableAdded, ruleset.TableRemoved:
			heads[key{ch.Family, ch.Table, ""}] = i
		case ruleset.ChainAdded, ruleset.ChainRemoved:
			heads[key{ch.Family, ch.Table, ch.Chain}] = i
		}
	}
	if len(heads) == 0 {
		return nil
	}
	members := map[int]int{}
	for i, ch := range e.o.Changes {
		h, ok := -1, false
		if ch.Kind != ruleset.TableAdded && ch.Kind != ruleset.TableRemoved {
			h, ok = heads[key{ch.Family, ch.Table, ""}]
		}
		if !ok && ch.Chain != "" && ch.Kind != ruleset.ChainAdded && ch.Kind != ruleset.ChainRemoved {
			h, ok = heads[key{ch.Family, ch.Table, ch.Chain}]
		}
		if !ok || h == i {
			continue
		}
		e.head[i] = h
		e.done[i] = true
		members[h]++
	}
	return members
}

// groupIndicators makes the first change of the event that is neither an indicator nor
// in a group the head of every indicator change, when there is one.
func (e *engine) groupIndicators() {
	h := slices.IndexFunc(e.o.Changes, func(ch ruleset.Change) bool { return !ch.IsIndicator() })
	for h >= 0 && e.head[h] >= 0 {
		h = e.head[h] // the table or chain change that stands for it
	}
	if h < 0 {
		return
	}
	for i, ch := range e.o.Changes {
		if ch.IsIndicator() && e.head[i] < 0 {
			e.head[i], e.done[i] = h, true
		}
	}
}

// ungroup gives the members of a group the outcome of its head.
func (e *engine) ungroup() {
	for i, h := range e.head {
		if h >= 0 {
			out := e.res.Outcomes[h]
			out.Origin = nil
			if out.Deviation == "" && out.CR == "" {
				// The head was an undo (a table put back): its members keep the origin
				// the undone deviation recorded.
				out.Origin = e.res.Outcomes[h].Origin
			}
			e.res.Outcomes[i] = out
		}
	}
}

// Grouped reports, per change of the last evaluation's observation, whether it was
// decided as part of a table or chain change.
func (r *Result) Grouped(i int) bool { return i < len(r.Heads) && r.Heads[i] >= 0 }

// IndexKey is what the store keeps beside an open deviation to find it without reading
// it: its kind, and the change and item it is about, in the form UndoKeys gives for the
// changes that would undo it.
func IndexKey(d *model.Deviation) string {
	return indexKey(string(d.Kind), d.Change, d.Family, d.Table, d.Chain,
		itemKey(d.Change, d.Rule, d.Set, d.Element, d.Object, d.Before, d.After))
}

// KindPrefix is the start of the IndexKey of every deviation of kind.
func KindPrefix(kind model.DeviationKind) string { return string(kind) + "\x00" }

// UndoKeys returns the keys, without the kind, of the open deviations that the changes
// could undo (see undo): the store reads only the open deviations whose IndexKey ends in
// one of them. Matching stays the engine's; this only narrows what it reads.
func UndoKeys(changes []ruleset.Change) map[string]bool {
	out := make(map[string]bool, len(changes))
	for _, ch := range changes {
		inv, ok := inverse(ch)
		if !ok {
			continue
		}
		out[indexKey("", inv.Kind, inv.Family, inv.Table, inv.Chain,
			itemKey(inv.Kind, inv.Rule, inv.Set, inv.Element, inv.Object, inv.Before,
				inv.After))] = true
	}
	return out
}

// KeyWithoutKind strips the kind from an IndexKey, for lookups in UndoKeys.
func KeyWithoutKind(key string) string {
	if i := strings.IndexByte(key, 0); i >= 0 {
		return "\x00" + key[i+1:]
	}
	return key
}

func indexKey(kind string, change ruleset.ChangeKind, family, table, chain, item string) string {
	return strings.Join([]string{kind, string(change), family, table, chain, item}, "\x00")
}

// itemKey is what sameItem compares for a change kind.
func itemKey(kind ruleset.ChangeKind, rule, set, element, object, before, after string) string {
	switch kind {
	case ruleset.ObjectChanged:
		return object + "\x00" + before + "\x00" + after
	case ruleset.RuleAdded, ruleset.RuleRemoved:
		return rule
	case ruleset.ElementAdded, ruleset.ElementRemoved:
		return set + "\x00" + element
	case ruleset.ChainPolicy:
		return before + "\x00" + after
	case ruleset.SetAdded, ruleset.SetRemoved:
		return set
	}
	return ""
}
