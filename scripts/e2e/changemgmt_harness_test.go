package e2e

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	agentnft "github.com/fenceline/fenceline/agent/nft"
	"github.com/fenceline/fenceline/aggregator/model"
	"github.com/fenceline/fenceline/aggregator/store"
	"github.com/fenceline/fenceline/scripts/lab"
	"github.com/fenceline/fenceline/shared/event"
	"github.com/fenceline/fenceline/shared/ruleset"
)

// The change-management scenarios run real nft changes in namespaces the test creates,
// read back with the agent's own nftables reader, signed as the agent signs them, and
// decided by the real replicated store (raft over TCP on loopback, bbolt). The scenario
// sets the clock: each event's observed time and each deadline tick are chosen, so
// windows at 02:00, across midnight and across daylight-saving changes are exact.

// cmBase is the ruleset each scenario device starts from.
const cmBase = `table inet filter {
	set blocklist {
		type ipv4_addr
	}
	chain input {
		type filter hook input priority filter; policy accept;
		ct state established,related accept
		iifname "lo" accept
		tcp dport 22 accept
		tcp dport 80 accept
	}
	chain forward {
		type filter hook forward priority filter; policy drop;
	}
}
table ip legacy {
	chain in {
		type filter hook input priority 10; policy accept;
		ip saddr 192.0.2.1 drop
		ip saddr 192.0.2.2 drop
		ip saddr 192.0.2.3 drop
		ip saddr 192.0.2.4 drop
		ip saddr 192.0.2.5 drop
		ip saddr 192.0.2.6 drop
	}
	chain out {
		type filter hook output priority 10; policy accept;
		ip daddr 198.51.100.0/24 counter drop
		ip daddr 203.0.113.0/24 counter drop
	}
}
`

// cmWorld is one scenario's aggregator store, tenant and devices.
type cmWorld struct {
	t      *testing.T
	lab    *lab.Lab
	s      *store.Store
	tenant string
	devs   map[string]*cmDevice
	ctx    context.Context
}

// cmDevice is a namespace with the agent's reader and signing key.
type cmDevice struct {
	name   string
	ns     string
	key    ed25519.PrivateKey
	signer *event.Signer
	seq    uint64
	prev   string
	rd     *agentnft.Reader
	last   *ruleset.Ruleset
}

func freeLoopback(t *testing.T) string {
	p, err := lab.FreePort()
	check(t, err)
	return fmt.Sprintf("127.0.0.1:%d", p)
}

// newWorld opens a fresh store for one scenario.
func newWorld(t *testing.T, l *lab.Lab, tenant string) *cmWorld {
	t.Helper()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	s, err := store.Open(store.Config{Dir: t.TempDir(), RaftListen: freeLoopback(t),
		NodeID: "cm", HeartbeatTimeout: 100 * time.Millisecond, ElectionTimeout: 100 * time.Millisecond,
		LeaderLeaseTimeout: 50 * time.Millisecond}, log)
	check(t, err)
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	check(t, s.WaitLeader(ctx))
	w := &cmWorld{t: t, lab: l, s: s, tenant: tenant, devs: map[string]*cmDevice{},
		ctx: context.Background()}
	// The scenarios send no heartbeats while their clock jumps hours ahead: silence
	// counts only where a scenario asks for it.
	w.policy(func(p *model.Policy) { p.SilenceAfter = "8760h" })
	return w
}

// device creates a namespace loaded with the base ruleset, enrolls it at `at` and sends
// its baseline observed at `at`.
func (w *cmWorld) device(name string, at time.Time, tags ...string) *cmDevice {
	t := w.t
	t.Helper()
	ns, err := w.lab.Netns("fl-cm")
	check(t, err)
	f := filepath.Join(t.TempDir(), name+".nft")
	check(t, os.WriteFile(f, []byte(cmBase), 0o600))
	nft(t, ns, "-f", f)
	_, key, err := ed25519.GenerateKey(rand.Reader)
	check(t, err)
	d := &cmDevice{name: name, ns: ns, key: key, signer: event.NewSigner(key)}
	w.enroll(d, at)
	if len(tags) > 0 {
		_, err := w.s.SetDeviceTags(w.ctx, w.tenant, name, tags)
		check(t, err)
	}
	d.rd, err = agentnft.Open(ns)
	check(t, err)
	t.Cleanup(func() { d.rd.Close() })
	rs, _, err := d.rd.Snapshot()
	check(t, err)
	w.send(d, event.Baseline, at, rs, nil, func(*event.Event) {})
	w.devs[name] = d
	return d
}

func (w *cmWorld) enroll(d *cmDevice, at time.Time) {
	tok, _, err := w.s.CreateEnrollment(w.ctx, w.tenant, d.name, time.Hour, at)
	check(w.t, err)
	_, err = w.s.Enroll(w.ctx, tok, d.key.Public().(ed25519.PublicKey), at)
	check(w.t, err)
}

// send signs and appends one event of the device.
func (w *cmWorld) send(d *cmDevice, kind event.Kind, at time.Time, rs *ruleset.Ruleset,
	changes []ruleset.Change, edit func(*event.Event)) *store.AppendResult {
	w.t.Helper()
	e := &event.Event{V: event.Version, Kind: kind, Tenant: w.tenant, Device: d.name,
		KeyID: d.signer.KeyID(), Seq: d.seq + 1, Prev: d.prev, Observed: event.FormatTime(at),
		Source: event.SourceNftables, After: rs.Digest().String(), Changes: changes}
	if d.last != nil && kind != event.Baseline {
		e.Before = d.last.Digest().String()
	}
	if kind.CarriesRuleset() {
		e.Ruleset = rs
	}
	edit(e)
	env, id, err := d.signer.Seal(e)
	check(w.t, err)
	res, err := w.s.AppendEvent(w.ctx, w.tenant, d.name, env, at)
	check(w.t, err)
	if res.Outcome != store.Accepted {
		w.t.Fatalf("%s event %d: %s", kind, e.Seq, res.Outcome)
	}
	d.seq, d.prev, d.last = e.Seq, id, rs
	return res
}

// nft applies an nft script to the device as an administrator would and reports the
// change the agent reads back, observed at `at`.
func (w *cmWorld) nft(d *cmDevice, at time.Time, script string) *store.AppendResult {
	t := w.t
	t.Helper()
	f := filepath.Join(t.TempDir(), "change.nft")
	check(t, os.WriteFile(f, []byte(script+"\n"), 0o600))
	nft(t, d.ns, "-f", f)
	rs, _, err := d.rd.Snapshot()
	check(t, err)
	changes := ruleset.Diff(d.last, rs)
	if len(changes) == 0 {
		t.Fatalf("nft %q changed nothing", script)
	}
	return w.send(d, event.Change, at, rs, changes, func(*event.Event) {})
}

// handle finds the handle of a rule, as an administrator would with `nft -a`.
func (w *cmWorld) handle(d *cmDevice, chain, prefix string) string {
	return ruleHandle(w.t, d.ns, chain, prefix)
}

// cr creates a CR at `now`.
func (w *cmWorld) cr(now time.Time, cr model.CR) (*model.CR, error) {
	cr.Tenant = w.tenant
	if cr.Title == "" {
		cr.Title = "scenario change"
	}
	if cr.Requester == "" {
		cr.Requester = "alice"
	}
	return w.s.CreateCR(w.ctx, &cr, now)
}

func (w *cmWorld) mustCR(now time.Time, cr model.CR) *model.CR {
	w.t.Helper()
	out, err := w.cr(now, cr)
	check(w.t, err)
	return out
}

func (w *cmWorld) approve(now time.Time, id, by string) (*model.CR, error) {
	return w.s.CRAction(w.ctx, store.CRActionRequest{Tenant: w.tenant, ID: id,
		Action: store.CRApprove, By: by, Why: "looks right"}, now)
}

// approved creates a CR and has bob approve it.
func (w *cmWorld) approved(now time.Time, cr model.CR) *model.CR {
	w.t.Helper()
	c := w.mustCR(now, cr)
	c, err := w.approve(now, c.ID, "bob")
	check(w.t, err)
	if c.State != model.CRApproved {
		w.t.Fatalf("%s is %s after approval", c.ID, c.State)
	}
	return c
}

func (w *cmWorld) tick(at time.Time) {
	w.t.Helper()
	_, err := w.s.Tick(w.ctx, at)
	check(w.t, err)
}

func (w *cmWorld) policy(edit func(p *model.Policy)) {
	w.t.Helper()
	p, err := w.s.Policy(w.tenant)
	check(w.t, err)
	edit(p)
	_, err = w.s.SetPolicy(w.ctx, p, "admin", time.Now())
	check(w.t, err)
}

func (w *cmWorld) deviations() []model.Deviation {
	w.t.Helper()
	ds, err := w.s.Deviations(w.tenant, store.DeviationFilter{})
	check(w.t, err)
	return ds
}

func (w *cmWorld) getCR(id string) *model.CR {
	w.t.Helper()
	c, err := w.s.CR(w.tenant, id)
	check(w.t, err)
	return c
}

// devKinds lists the kinds of the tenant's deviations, sorted.
func devKinds(ds []model.Deviation) []string {
	var out []string
	for _, d := range ds {
		out = append(out, string(d.Kind))
	}
	slices.Sort(out)
	return out
}

func inZone(t *testing.T, zone, local string) time.Time {
	t.Helper()
	loc, err := time.LoadLocation(zone)
	check(t, err)
	tm, err := time.ParseInLocation("2006-01-02 15:04", local, loc)
	check(t, err)
	return tm.UTC()
}

func planAdd(chain, rule string) model.PlannedChange {
	return model.PlannedChange{Action: model.ActionAdd, Chain: chain, Rule: rule}
}

func describeDevs(ds []model.Deviation) string {
	var b strings.Builder
	for _, d := range ds {
		fmt.Fprintf(&b, "\n\t%s %s %s %s %s %q cr=%s %s", d.ID, d.Kind, d.State, d.Device, d.Change,
			d.What(), d.CR, d.Detail)
	}
	return b.String()
}
