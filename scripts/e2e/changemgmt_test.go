package e2e

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fenceline/fenceline/aggregator/model"
	"github.com/fenceline/fenceline/aggregator/store"
	"github.com/fenceline/fenceline/shared/event"
)

// The scenario clock: a Wednesday in February; CRs are filed an hour before T, their
// windows run from T to T+2h unless a scenario says otherwise, and the deadline tick
// comes at T+3h.
var (
	cmT     = time.Date(2027, 2, 10, 10, 0, 0, 0, time.UTC)
	cmFiled = cmT.Add(-time.Hour)
)

const input = "inet filter input"

// win is the default window.
func win(c model.CR) model.CR {
	if c.WindowStart.IsZero() {
		c.WindowStart, c.WindowEnd = cmT, cmT.Add(2*time.Hour)
	}
	return c
}

type cmCase struct {
	name string
	run  func(w *cmWorld)
	// want is the multiset of deviation kinds the tenant has at the end, sorted.
	want []string
	// check asserts the rest of the verdict (CR states, fields, provenance).
	check func(t *testing.T, w *cmWorld)
}

func crState(t *testing.T, w *cmWorld, id string, state model.CRState, outcome string) {
	t.Helper()
	c := w.getCR(id)
	got := ""
	if c.Verification != nil {
		got = c.Verification.Outcome
	}
	if c.State != state || got != outcome {
		t.Errorf("%s: state %s, verification %q; want %s, %q", id, c.State, got, state, outcome)
	}
}

// origin checks the provenance of the rule on the device.
func origin(t *testing.T, w *cmWorld, device, rule, source, cr string) {
	t.Helper()
	rules, err := w.s.Rules(w.tenant, device)
	check(t, err)
	for _, r := range rules {
		if r.Rule == rule {
			if r.Source != source || r.CR != cr {
				t.Errorf("rule %q on %s: origin %+v, want %s %s", rule, device, r.Origin, source, cr)
			}
			return
		}
	}
	t.Errorf("rule %q not on %s", rule, device)
}

func TestChangeManagementScenarios(t *testing.T) {
	l := newLab(t)
	var ids []string // the CR ids of the current scenario, in creation order
	cases := []cmCase{
		{
			name: "approved change inside its window",
			run: func(w *cmWorld) {
				fw := w.device("fw1", cmFiled.Add(-time.Hour))
				c := w.approved(cmFiled, win(model.CR{Device: "fw1",
					Changes: []model.PlannedChange{planAdd(input, "tcp dport 443 accept")}}))
				ids = []string{c.ID}
				w.nft(fw, cmT.Add(10*time.Minute), "add rule inet filter input tcp dport 443 accept")
				w.tick(cmT.Add(3 * time.Hour))
			},
			check: func(t *testing.T, w *cmWorld) {
				crState(t, w, ids[0], model.CRVerified, model.Verified)
				origin(t, w, "fw1", "tcp dport 443 accept", model.SourceCR, ids[0])
				origin(t, w, "fw1", "tcp dport 22 accept", model.SourceBaseline, "")
			},
		},
		{
			name: "change with no CR",
			run: func(w *cmWorld) {
				fw := w.device("fw1", cmFiled)
				w.nft(fw, cmT, "add rule inet filter input tcp dport 23 accept")
			},
			want: []string{"unauthorized"},
			check: func(t *testing.T, w *cmWorld) {
				origin(t, w, "fw1", "tcp dport 23 accept", model.SourceUnauthorized, "")
			},
		},
		{
			name: "two extra rules added during an approved change",
			run: func(w *cmWorld) {
				fw := w.device("fw1", cmFiled)
				c := w.approved(cmFiled, win(model.CR{Device: "fw1",
					Changes: []model.PlannedChange{planAdd(input, "tcp dport 443 accept")}}))
				ids = []string{c.ID}
				w.nft(fw, cmT.Add(5*time.Minute), "add rule inet filter input tcp dport 443 accept\n"+
					"add rule inet filter input tcp dport 23 accept\n"+
					"add rule inet filter input tcp dport 3389 accept")
				w.tick(cmT.Add(3 * time.Hour))
			},
			want: []string{"unauthorized", "unauthorized"},
			check: func(t *testing.T, w *cmWorld) {
				crState(t, w, ids[0], model.CRVerified, model.Verified)
				for _, d := range w.deviations() {
					if d.Rule != "tcp dport 23 accept" && d.Rule != "tcp dport 3389 accept" {
						t.Errorf("deviation for %q", d.Rule)
					}
				}
			},
		},
		{
			name: "change approved for the test device lands on production",
			run: func(w *cmWorld) {
				w.device("fw-test", cmFiled)
				prod := w.device("fw-prod", cmFiled)
				c := w.approved(cmFiled, win(model.CR{Device: "fw-test",
					Changes: []model.PlannedChange{planAdd(input, "tcp dport 443 accept")}}))
				ids = []string{c.ID}
				w.nft(prod, cmT.Add(time.Minute), "add rule inet filter input tcp dport 443 accept")
				w.tick(cmT.Add(3 * time.Hour))
			},
			want: []string{"incomplete", "unauthorized"},
			check: func(t *testing.T, w *cmWorld) {
				for _, d := range w.deviations() {
					if d.Kind == model.Unauthorized && d.Device != "fw-prod" ||
						d.Kind == model.IncompleteCR && (d.Device != "fw-test" || d.CR != ids[0]) {
						t.Errorf("deviation %+v", d)
					}
				}
				crState(t, w, ids[0], model.CRFailed, model.Incomplete)
			},
		},
		{
			name: "change at 02:00 outside its window",
			run: func(w *cmWorld) {
				w.policy(func(p *model.Policy) { p.TimeZone = "Europe/Berlin" })
				fw := w.device("fw1", cmFiled.Add(-12*time.Hour))
				c := w.approved(inZone(t, "Europe/Berlin", "2027-02-10 01:00"), model.CR{Device: "fw1",
					WindowStart: inZone(t, "Europe/Berlin", "2027-02-10 10:00"),
					WindowEnd:   inZone(t, "Europe/Berlin", "2027-02-10 12:00"),
					Changes:     []model.PlannedChange{planAdd(input, "tcp dport 443 accept")}})
				ids = []string{c.ID}
				w.nft(fw, inZone(t, "Europe/Berlin", "2027-02-10 02:00"),
					"add rule inet filter input tcp dport 443 accept")
				w.tick(inZone(t, "Europe/Berlin", "2027-02-10 13:00"))
			},
			want: []string{"incomplete", "out_of_window"},
			check: func(t *testing.T, w *cmWorld) {
				if c := w.getCR(ids[0]); c.TimeZone != "Europe/Berlin" {
					t.Errorf("CR time zone %q, want the tenant's", c.TimeZone)
				}
			},
		},
		{
			name: "emergency change never reviewed",
			run: func(w *cmWorld) {
				w.policy(func(p *model.Policy) { p.EmergencyReview = "24h" })
				fw := w.device("fw1", cmFiled)
				c := w.approved(cmFiled, win(model.CR{Device: "fw1", Type: model.CREmergency,
					Changes: []model.PlannedChange{planAdd(input, "ip saddr 192.0.2.99 drop")}}))
				ids = []string{c.ID}
				w.nft(fw, cmT.Add(time.Minute), "add rule inet filter input ip saddr 192.0.2.99 drop")
				w.tick(cmT.Add(3 * time.Hour))
				w.tick(cmT.Add(25 * time.Hour))
			},
			want: []string{"emergency_review_due"},
			check: func(t *testing.T, w *cmWorld) {
				crState(t, w, ids[0], model.CRVerified, model.Verified)
			},
		},
		{
			name: "emergency change reviewed late resolves its overdue review",
			run: func(w *cmWorld) {
				w.policy(func(p *model.Policy) { p.EmergencyReview = "24h" })
				fw := w.device("fw1", cmFiled)
				c := w.approved(cmFiled, win(model.CR{Device: "fw1", Type: model.CREmergency,
					Changes: []model.PlannedChange{planAdd(input, "ip saddr 192.0.2.98 drop")}}))
				ids = []string{c.ID}
				w.nft(fw, cmT.Add(time.Minute), "add rule inet filter input ip saddr 192.0.2.98 drop")
				w.tick(cmT.Add(3 * time.Hour))
				w.tick(cmT.Add(25 * time.Hour))
				_, err := w.s.CRAction(w.ctx, store.CRActionRequest{Tenant: w.tenant, ID: c.ID,
					Action: store.CRReview, By: "carol", Why: "reviewed at the CAB"}, cmT.Add(26*time.Hour))
				check(t, err)
			},
			want: []string{"emergency_review_due"},
			check: func(t *testing.T, w *cmWorld) {
				d := w.deviations()[0]
				if d.State != model.DeviationResolved || d.Resolution != model.ResolvedReviewed {
					t.Errorf("overdue review deviation after the review: %+v", d)
				}
			},
		},
		{
			name: "emergency change reviewed in time",
			run: func(w *cmWorld) {
				w.policy(func(p *model.Policy) { p.EmergencyReview = "24h" })
				fw := w.device("fw1", cmFiled)
				c := w.approved(cmFiled, win(model.CR{Device: "fw1", Type: model.CREmergency,
					Changes: []model.PlannedChange{planAdd(input, "ip saddr 192.0.2.99 drop")}}))
				ids = []string{c.ID}
				w.nft(fw, cmT.Add(time.Minute), "add rule inet filter input ip saddr 192.0.2.99 drop")
				_, err := w.s.CRAction(w.ctx, store.CRActionRequest{Tenant: w.tenant, ID: c.ID,
					Action: store.CRReview, By: "carol", Why: "attack mitigated"}, cmT.Add(2*time.Hour))
				check(t, err)
				w.tick(cmT.Add(25 * time.Hour))
			},
		},
		{
			name: "CR approved by its own requester is refused",
			run: func(w *cmWorld) {
				fw := w.device("fw1", cmFiled)
				c := w.mustCR(cmFiled, win(model.CR{Device: "fw1", Requester: "alice",
					Changes: []model.PlannedChange{planAdd(input, "tcp dport 443 accept")}}))
				ids = []string{c.ID}
				if _, err := w.approve(cmFiled, c.ID, "Alice"); !errors.Is(err, store.ErrSelfApproval) {
					t.Errorf("self approval: %v", err)
				}
				w.nft(fw, cmT.Add(time.Minute), "add rule inet filter input tcp dport 443 accept")
			},
			want: []string{"unapproved"},
			check: func(t *testing.T, w *cmWorld) {
				crState(t, w, ids[0], model.CRSubmitted, "")
			},
		},
		{
			name: "rule moved to another position",
			run: func(w *cmWorld) {
				fw := w.device("fw1", cmFiled)
				h := w.handle(fw, input, "tcp dport 22 accept")
				w.nft(fw, cmT, "delete rule inet filter input handle "+h+"\n"+
					"insert rule inet filter input tcp dport 22 accept")
			},
			want: []string{"unauthorized"},
			check: func(t *testing.T, w *cmWorld) {
				d := w.deviations()[0]
				if d.Change != "rule_moved" || d.Rule != "tcp dport 22 accept" || d.Position != 1 {
					t.Errorf("move deviation %+v", d)
				}
				origin(t, w, "fw1", "tcp dport 22 accept", model.SourceBaseline, "")
			},
		},
		{
			name: "change reverted inside its window",
			run: func(w *cmWorld) {
				fw := w.device("fw1", cmFiled)
				c := w.approved(cmFiled, win(model.CR{Device: "fw1", Rollback: "delete the rule",
					Changes: []model.PlannedChange{planAdd(input, "tcp dport 443 accept")}}))
				ids = []string{c.ID}
				w.nft(fw, cmT.Add(time.Minute), "add rule inet filter input tcp dport 443 accept")
				h := w.handle(fw, input, "tcp dport 443 accept")
				w.nft(fw, cmT.Add(20*time.Minute), "delete rule inet filter input handle "+h)
				w.tick(cmT.Add(3 * time.Hour))
			},
			check: func(t *testing.T, w *cmWorld) {
				crState(t, w, ids[0], model.CRFailed, "rolled_back")
			},
		},
		{
			name: "a planned rule deleted and put back inside its window still implements its CR",
			run: func(w *cmWorld) {
				fw := w.device("fw1", cmFiled)
				c := w.approved(cmFiled, win(model.CR{Device: "fw1",
					Changes: []model.PlannedChange{planAdd(input, "tcp dport 443 accept")}}))
				ids = []string{c.ID}
				w.nft(fw, cmT.Add(time.Minute), "add rule inet filter input tcp dport 443 accept")
				h := w.handle(fw, input, "tcp dport 443 accept")
				w.nft(fw, cmT.Add(10*time.Minute), "delete rule inet filter input handle "+h)
				w.nft(fw, cmT.Add(11*time.Minute), "insert rule inet filter input tcp dport 443 accept")
				w.tick(cmT.Add(3 * time.Hour))
			},
			check: func(t *testing.T, w *cmWorld) {
				crState(t, w, ids[0], model.CRVerified, model.Verified)
				origin(t, w, "fw1", "tcp dport 443 accept", model.SourceCR, ids[0])
			},
		},
		{
			name: "a planned configuration change covers the object it names, nothing else",
			run: func(w *cmWorld) {
				fw := w.device("fw1", cmFiled)
				c := w.approved(cmFiled, win(model.CR{Device: "fw1",
					Changes: []model.PlannedChange{{Action: model.ActionConfig, Object: "quota q1"}}}))
				ids = []string{c.ID}
				w.nft(fw, cmT.Add(time.Minute), "add quota inet filter q1 { over 100 mbytes }")
				w.nft(fw, cmT.Add(2*time.Minute), "add quota inet filter q2 { over 5 mbytes }")
				w.tick(cmT.Add(3 * time.Hour))
			},
			want: []string{"unauthorized"},
			check: func(t *testing.T, w *cmWorld) {
				crState(t, w, ids[0], model.CRVerified, model.Verified)
				if d := w.deviations()[0]; d.Object != "quota q2" {
					t.Errorf("deviation about %q, want quota q2", d.Object)
				}
			},
		},
		{
			name: "set element added under a standard template",
			run: func(w *cmWorld) {
				w.policy(func(p *model.Policy) {
					p.Templates = []model.Template{{Name: "blocklist", DeviceTags: []string{"edge"},
						Changes: []model.TemplateChange{{Action: model.ActionAddElement, Set: "blocklist"}}}}
				})
				fw := w.device("fw1", cmFiled, "edge")
				c := w.mustCR(cmFiled, win(model.CR{Device: "fw1", Type: model.CRStandard,
					Template: "blocklist", Changes: []model.PlannedChange{{Action: model.ActionAddElement,
						Set: "inet filter blocklist", Element: "192.0.2.7"}}}))
				ids = []string{c.ID}
				if c.State != model.CRApproved {
					t.Errorf("standard CR is %s, want approved by its template", c.State)
				}
				w.nft(fw, cmT.Add(time.Minute), "add element inet filter blocklist { 192.0.2.7 }")
				w.tick(cmT.Add(3 * time.Hour))
			},
			check: func(t *testing.T, w *cmWorld) {
				crState(t, w, ids[0], model.CRVerified, model.Verified)
			},
		},
		{
			name: "port implemented as 8443 instead of the approved 443",
			run: func(w *cmWorld) {
				fw := w.device("fw1", cmFiled)
				c := w.approved(cmFiled, win(model.CR{Device: "fw1",
					Changes: []model.PlannedChange{planAdd(input, `iifname "eth0" tcp dport 443 accept`)}}))
				ids = []string{c.ID}
				w.nft(fw, cmT.Add(time.Minute), `add rule inet filter input iifname "eth0" tcp dport 8443 accept`)
				w.tick(cmT.Add(3 * time.Hour))
			},
			want: []string{"differs_from_spec"},
			check: func(t *testing.T, w *cmWorld) {
				d := w.deviations()[0]
				if len(d.Fields) != 1 || d.Fields[0] != (model.FieldDiff{Field: "tcp dport", Planned: "443",
					Actual: "8443"}) || d.CR != ids[0] {
					t.Errorf("differs: fields %+v cr %s", d.Fields, d.CR)
				}
				crState(t, w, ids[0], model.CRFailed, model.Differs)
			},
		},
		{
			name: "window closes with one of two planned rules missing",
			run: func(w *cmWorld) {
				fw := w.device("fw1", cmFiled)
				c := w.approved(cmFiled, win(model.CR{Device: "fw1", Changes: []model.PlannedChange{
					planAdd(input, "tcp dport 443 accept"), planAdd(input, "tcp dport 8080 accept")}}))
				ids = []string{c.ID}
				w.nft(fw, cmT.Add(time.Minute), "add rule inet filter input tcp dport 443 accept")
				w.tick(cmT.Add(3 * time.Hour))
			},
			want: []string{"incomplete"},
			check: func(t *testing.T, w *cmWorld) {
				d := w.deviations()[0]
				if !strings.Contains(d.Planned, "tcp dport 8080 accept") || strings.Contains(d.Planned, "443") {
					t.Errorf("incomplete lists %q", d.Planned)
				}
				crState(t, w, ids[0], model.CRFailed, model.Incomplete)
				ev := w.getCR(ids[0]).Verification.Evidence
				if len(ev) != 2 || ev[0].Status != model.Landed || ev[1].Status != model.Missing {
					t.Errorf("evidence %+v", ev)
				}
			},
		},
		{
			name: "two CRs overlapping on one device",
			run: func(w *cmWorld) {
				fw := w.device("fw1", cmFiled)
				a := w.approved(cmFiled, win(model.CR{Device: "fw1",
					Changes: []model.PlannedChange{planAdd(input, "tcp dport 443 accept")}}))
				b := w.approved(cmFiled, model.CR{Device: "fw1", WindowStart: cmT.Add(30 * time.Minute),
					WindowEnd: cmT.Add(150 * time.Minute),
					Changes:   []model.PlannedChange{planAdd(input, "tcp dport 8443 accept")}})
				ids = []string{a.ID, b.ID}
				w.nft(fw, cmT.Add(45*time.Minute), "add rule inet filter input tcp dport 8443 accept\n"+
					"add rule inet filter input tcp dport 443 accept")
				w.tick(cmT.Add(3 * time.Hour))
			},
			check: func(t *testing.T, w *cmWorld) {
				crState(t, w, ids[0], model.CRVerified, model.Verified)
				crState(t, w, ids[1], model.CRVerified, model.Verified)
				origin(t, w, "fw1", "tcp dport 8443 accept", model.SourceCR, ids[1])
			},
		},
		{
			name: "tag-selected CR over three devices, one never changed",
			run: func(w *cmWorld) {
				var fws []*cmDevice
				for _, n := range []string{"br1", "br2", "br3"} {
					fws = append(fws, w.device(n, cmFiled, "branch"))
				}
				w.device("hq", cmFiled, "core")
				c := w.approved(cmFiled, win(model.CR{Targets: model.Targets{Tags: []string{"branch"}},
					Changes: []model.PlannedChange{planAdd(input, "udp dport 51820 accept")}}))
				ids = []string{c.ID}
				if !slices.Equal(c.Devices, []string{"br1", "br2", "br3"}) {
					t.Errorf("CR devices %v", c.Devices)
				}
				w.nft(fws[0], cmT.Add(time.Minute), "add rule inet filter input udp dport 51820 accept")
				w.nft(fws[2], cmT.Add(2*time.Minute), "add rule inet filter input udp dport 51820 accept")
				w.tick(cmT.Add(3 * time.Hour))
			},
			want: []string{"incomplete"},
			check: func(t *testing.T, w *cmWorld) {
				if d := w.deviations()[0]; d.Device != "br2" {
					t.Errorf("incomplete names %q, want br2", d.Device)
				}
				crState(t, w, ids[0], model.CRFailed, model.Incomplete)
			},
		},
		{
			name: "window across the spring daylight-saving change, change inside",
			run: func(w *cmWorld) {
				w.policy(func(p *model.Policy) { p.TimeZone = "Europe/Berlin" })
				fw := w.device("fw1", inZone(t, "Europe/Berlin", "2027-03-27 12:00"))
				// 01:30 to 03:30 local is one hour: 02:00 CET jumps to 03:00 CEST.
				c := w.approved(inZone(t, "Europe/Berlin", "2027-03-27 12:00"), model.CR{Device: "fw1",
					WindowStart: inZone(t, "Europe/Berlin", "2027-03-28 01:30"),
					WindowEnd:   inZone(t, "Europe/Berlin", "2027-03-28 03:30"),
					Changes:     []model.PlannedChange{planAdd(input, "tcp dport 443 accept")}})
				ids = []string{c.ID}
				if d := c.WindowEnd.Sub(c.WindowStart); d != time.Hour {
					t.Errorf("window lasts %s, want 1h", d)
				}
				w.nft(fw, inZone(t, "Europe/Berlin", "2027-03-28 03:15"),
					"add rule inet filter input tcp dport 443 accept")
				w.tick(inZone(t, "Europe/Berlin", "2027-03-28 05:00"))
			},
			check: func(t *testing.T, w *cmWorld) {
				crState(t, w, ids[0], model.CRVerified, model.Verified)
			},
		},
		{
			name: "window across the spring daylight-saving change, change after it",
			run: func(w *cmWorld) {
				w.policy(func(p *model.Policy) { p.TimeZone = "Europe/Berlin" })
				fw := w.device("fw1", inZone(t, "Europe/Berlin", "2027-03-27 12:00"))
				w.approved(inZone(t, "Europe/Berlin", "2027-03-27 12:00"), model.CR{Device: "fw1",
					WindowStart: inZone(t, "Europe/Berlin", "2027-03-28 01:30"),
					WindowEnd:   inZone(t, "Europe/Berlin", "2027-03-28 03:30"),
					Changes:     []model.PlannedChange{planAdd(input, "tcp dport 443 accept")}})
				// 03:45 CEST is 01:45 UTC: two hours after 01:30 CET by the wall clock's
				// numbers, but after the window.
				w.nft(fw, inZone(t, "Europe/Berlin", "2027-03-28 03:45"),
					"add rule inet filter input tcp dport 443 accept")
			},
			want: []string{"out_of_window"},
		},
		{
			name: "window across the autumn daylight-saving change",
			run: func(w *cmWorld) {
				w.policy(func(p *model.Policy) { p.TimeZone = "Europe/Berlin" })
				fw := w.device("fw1", inZone(t, "Europe/Berlin", "2027-10-30 12:00"))
				// 01:00 to 04:00 local lasts four hours: 03:00 CEST falls back to 02:00 CET.
				c := w.approved(inZone(t, "Europe/Berlin", "2027-10-30 12:00"), model.CR{Device: "fw1",
					WindowStart: inZone(t, "Europe/Berlin", "2027-10-31 01:00"),
					WindowEnd:   inZone(t, "Europe/Berlin", "2027-10-31 04:00"),
					Changes:     []model.PlannedChange{planAdd(input, "tcp dport 443 accept")}})
				ids = []string{c.ID}
				if d := c.WindowEnd.Sub(c.WindowStart); d != 4*time.Hour {
					t.Errorf("window lasts %s, want 4h", d)
				}
				// The second 02:30 of the night (CET, 01:30 UTC).
				w.nft(fw, time.Date(2027, 10, 31, 1, 30, 0, 0, time.UTC),
					"add rule inet filter input tcp dport 443 accept")
				w.tick(inZone(t, "Europe/Berlin", "2027-10-31 05:00"))
			},
			check: func(t *testing.T, w *cmWorld) {
				crState(t, w, ids[0], model.CRVerified, model.Verified)
			},
		},
		{
			name: "window across midnight in the tenant's time zone",
			run: func(w *cmWorld) {
				w.policy(func(p *model.Policy) { p.TimeZone = "America/New_York" })
				fw := w.device("fw1", cmFiled)
				c := w.approved(cmFiled, model.CR{Device: "fw1",
					WindowStart: inZone(t, "America/New_York", "2027-02-10 23:00"),
					WindowEnd:   inZone(t, "America/New_York", "2027-02-11 01:00"),
					Changes:     []model.PlannedChange{planAdd(input, "tcp dport 443 accept")}})
				ids = []string{c.ID}
				w.nft(fw, inZone(t, "America/New_York", "2027-02-11 00:30"),
					"add rule inet filter input tcp dport 443 accept")
				w.tick(inZone(t, "America/New_York", "2027-02-11 02:00"))
			},
			check: func(t *testing.T, w *cmWorld) {
				crState(t, w, ids[0], model.CRVerified, model.Verified)
			},
		},
		{
			name: "change under a CR that is submitted, not approved",
			run: func(w *cmWorld) {
				fw := w.device("fw1", cmFiled)
				w.mustCR(cmFiled, win(model.CR{Device: "fw1",
					Changes: []model.PlannedChange{planAdd(input, "tcp dport 443 accept")}}))
				w.nft(fw, cmT.Add(time.Minute), "add rule inet filter input tcp dport 443 accept")
			},
			want: []string{"unapproved"},
		},
		{
			name: "change under a rejected CR",
			run: func(w *cmWorld) {
				fw := w.device("fw1", cmFiled)
				c := w.mustCR(cmFiled, win(model.CR{Device: "fw1",
					Changes: []model.PlannedChange{planAdd(input, "tcp dport 443 accept")}}))
				_, err := w.s.CRAction(w.ctx, store.CRActionRequest{Tenant: w.tenant, ID: c.ID,
					Action: store.CRReject, By: "bob", Why: "not needed"}, cmFiled)
				check(t, err)
				w.nft(fw, cmT.Add(time.Minute), "add rule inet filter input tcp dport 443 accept")
			},
			want: []string{"unapproved"},
		},
		{
			name: "a table deleted is one deviation naming it",
			run: func(w *cmWorld) {
				fw := w.device("fw1", cmFiled)
				w.nft(fw, cmT, "delete table ip legacy")
			},
			want: []string{"unauthorized"},
			check: func(t *testing.T, w *cmWorld) {
				d := w.deviations()[0]
				if d.Change != "table_removed" || d.Table != "legacy" || !strings.Contains(d.Detail, "10 changes") {
					t.Errorf("table deviation %+v", d)
				}
			},
		},
		{
			name: "a chain deleted is one deviation naming it",
			run: func(w *cmWorld) {
				fw := w.device("fw1", cmFiled)
				w.nft(fw, cmT, "flush chain ip legacy out\ndelete chain ip legacy out")
			},
			want: []string{"unauthorized"},
			check: func(t *testing.T, w *cmWorld) {
				d := w.deviations()[0]
				if d.Change != "chain_removed" || d.Chain != "out" {
					t.Errorf("chain deviation %+v", d)
				}
			},
		},
		{
			name: "set element added without a CR",
			run: func(w *cmWorld) {
				fw := w.device("fw1", cmFiled)
				w.nft(fw, cmT, "add element inet filter blocklist { 203.0.113.9 }")
			},
			want: []string{"unauthorized"},
		},
		{
			name: "approved chain policy change",
			run: func(w *cmWorld) {
				fw := w.device("fw1", cmFiled)
				c := w.approved(cmFiled, win(model.CR{Device: "fw1", Changes: []model.PlannedChange{{
					Action: model.ActionPolicy, Chain: "inet filter forward", Policy: "accept"}}}))
				ids = []string{c.ID}
				w.nft(fw, cmT.Add(time.Minute), "chain inet filter forward { policy accept; }")
				w.tick(cmT.Add(3 * time.Hour))
			},
			check: func(t *testing.T, w *cmWorld) {
				crState(t, w, ids[0], model.CRVerified, model.Verified)
			},
		},
		{
			name: "chain policy changed without a CR",
			run: func(w *cmWorld) {
				fw := w.device("fw1", cmFiled)
				w.nft(fw, cmT, "chain inet filter input { policy drop; }")
			},
			want: []string{"unauthorized"},
		},
		{
			name: "approved rule deletion",
			run: func(w *cmWorld) {
				fw := w.device("fw1", cmFiled)
				c := w.approved(cmFiled, win(model.CR{Device: "fw1", Changes: []model.PlannedChange{{
					Action: model.ActionDelete, Chain: input, Rule: "tcp dport 80 accept"}}}))
				ids = []string{c.ID}
				h := w.handle(fw, input, "tcp dport 80 accept")
				w.nft(fw, cmT.Add(time.Minute), "delete rule inet filter input handle "+h)
				w.tick(cmT.Add(3 * time.Hour))
			},
			check: func(t *testing.T, w *cmWorld) {
				crState(t, w, ids[0], model.CRVerified, model.Verified)
			},
		},
		{
			name: "unauthorized rule undone: the deviation resolves as rolled back",
			run: func(w *cmWorld) {
				fw := w.device("fw1", cmFiled)
				w.nft(fw, cmT, "add rule inet filter input tcp dport 23 accept")
				h := w.handle(fw, input, "tcp dport 23 accept")
				w.nft(fw, cmT.Add(time.Minute), "delete rule inet filter input handle "+h)
			},
			want: []string{"unauthorized"},
			check: func(t *testing.T, w *cmWorld) {
				d := w.deviations()[0]
				if d.State != model.DeviationResolved || d.Resolution != model.ResolvedRollback {
					t.Errorf("deviation %s %s, want resolved by rollback", d.State, d.Resolution)
				}
			},
		},
		{
			name: "rule added elsewhere than the planned position",
			run: func(w *cmWorld) {
				fw := w.device("fw1", cmFiled)
				p := planAdd(input, "tcp dport 443 accept")
				p.Position = 1
				w.approved(cmFiled, win(model.CR{Device: "fw1", Changes: []model.PlannedChange{p}}))
				w.nft(fw, cmT.Add(time.Minute), "add rule inet filter input tcp dport 443 accept")
			},
			want: []string{"differs_from_spec"},
			check: func(t *testing.T, w *cmWorld) {
				d := w.deviations()[0]
				if len(d.Fields) != 1 || d.Fields[0].Field != "position" || d.Fields[0].Planned != "1" {
					t.Errorf("fields %+v", d.Fields)
				}
			},
		},
		{
			name: "agent silent, then back",
			run: func(w *cmWorld) {
				w.policy(func(p *model.Policy) { p.SilenceAfter = "2m" })
				fw := w.device("fw1", cmT)
				w.tick(cmT.Add(5 * time.Minute))
				if ds := w.deviations(); len(ds) != 1 || ds[0].State != model.DeviationOpen {
					t.Errorf("after silence: %s", describeDevs(ds))
				}
				w.send(fw, event.Heartbeat, cmT.Add(6*time.Minute), fw.last, nil, func(*event.Event) {})
			},
			want: []string{"agent_silent"},
			check: func(t *testing.T, w *cmWorld) {
				if d := w.deviations()[0]; d.State != model.DeviationResolved || d.Resolution != model.ResolvedRecovered {
					t.Errorf("silence deviation %s %s after the device reported", d.State, d.Resolution)
				}
			},
		},
		{
			name: "a device heard before the aggregator's outage gets a full silence period after it",
			run: func(w *cmWorld) {
				w.policy(func(p *model.Policy) { p.SilenceAfter = "2m" })
				w.device("fw1", cmT)
				// The leader took office at +4m (the aggregator was down before): at +5m the
				// device has had one minute under it, not two.
				_, err := w.s.TickSince(w.ctx, cmT.Add(5*time.Minute), cmT.Add(4*time.Minute))
				check(t, err)
				if ds := w.deviations(); len(ds) != 0 {
					t.Errorf("silent one minute after the leader took office: %s", describeDevs(ds))
				}
				_, err = w.s.TickSince(w.ctx, cmT.Add(6*time.Minute+30*time.Second), cmT.Add(4*time.Minute))
				check(t, err)
			},
			want: []string{"agent_silent"},
		},
		{
			name: "events folded at the agent's disk bound",
			run: func(w *cmWorld) {
				fw := w.device("fw1", cmFiled)
				nft(t, fw.ns, "add", "rule", "inet", "filter", "input", "tcp", "dport", "25", "accept")
				rs, _, err := fw.rd.Snapshot()
				check(t, err)
				w.send(fw, event.Fold, cmT, rs, nil, func(e *event.Event) {
					e.Folded = 40
					e.Note = "outbox full"
				})
			},
			want: []string{"folded", "unauthorized"},
		},
		{
			name: "resync after lost events",
			run: func(w *cmWorld) {
				fw := w.device("fw1", cmFiled)
				nft(t, fw.ns, "add", "element", "inet", "filter", "blocklist", "{ 198.51.100.7 }")
				rs, _, err := fw.rd.Snapshot()
				check(t, err)
				w.send(fw, event.Resync, cmT, rs, nil, func(*event.Event) {})
			},
			want: []string{"gap", "unauthorized"},
		},
		{
			name: "re-enrollment with a ruleset changed meanwhile",
			run: func(w *cmWorld) {
				fw := w.device("fw1", cmFiled)
				nft(t, fw.ns, "add", "rule", "inet", "filter", "input", "tcp", "dport", "2222", "accept")
				_, key, err := ed25519.GenerateKey(rand.Reader)
				check(t, err)
				fw.key, fw.signer, fw.seq, fw.prev = key, event.NewSigner(key), 0, ""
				w.enroll(fw, cmT)
				rs, _, err := fw.rd.Snapshot()
				check(t, err)
				w.send(fw, event.Baseline, cmT, rs, nil, func(*event.Event) {})
			},
			want: []string{"unauthorized"},
			check: func(t *testing.T, w *cmWorld) {
				d := w.deviations()[0]
				if d.Rule != "tcp dport 2222 accept" || !strings.Contains(d.Detail, "re-enrolled") {
					t.Errorf("re-enrollment deviation %+v", d)
				}
			},
		},
		{
			name: "unauthorized rule covered by a retroactive CR",
			run: func(w *cmWorld) {
				fw := w.device("fw1", cmFiled)
				w.nft(fw, cmT, "add rule inet filter input tcp dport 23 accept")
				c := w.approved(cmT.Add(time.Minute), model.CR{Device: "fw1", Title: "telnet for the vendor",
					WindowStart: cmT.Add(-time.Hour), WindowEnd: cmT.Add(time.Hour),
					Changes: []model.PlannedChange{planAdd(input, "tcp dport 23 accept")}})
				ids = []string{c.ID}
				dev := w.deviations()[0]
				_, err := w.s.DeviationAction(w.ctx, store.DeviationActionRequest{Tenant: w.tenant,
					ID: dev.ID, Action: store.DeviationAcknowledge, By: "bob", Why: "looking"}, cmT.Add(time.Minute))
				check(t, err)
				_, err = w.s.DeviationAction(w.ctx, store.DeviationActionRequest{Tenant: w.tenant,
					ID: dev.ID, Action: store.DeviationResolve, By: "bob", Why: "vendor access",
					Resolution: model.ResolvedRetroactiveCR, CR: c.ID}, cmT.Add(2*time.Minute))
				check(t, err)
			},
			want: []string{"unauthorized"},
			check: func(t *testing.T, w *cmWorld) {
				d := w.deviations()[0]
				if d.State != model.DeviationResolved || d.ResolvedBy != ids[0] || len(d.History) != 2 {
					t.Errorf("deviation %+v", d)
				}
				origin(t, w, "fw1", "tcp dport 23 accept", model.SourceUnauthorized, ids[0])
			},
		},
		{
			name: "table deleted and created again wide open stays raised",
			run: func(w *cmWorld) {
				fw := w.device("fw1", cmFiled)
				w.nft(fw, cmT, "delete table inet filter")
				w.nft(fw, cmT.Add(time.Minute), "add table inet filter\n"+
					"add chain inet filter input { type filter hook input priority filter; policy accept; }\n"+
					"add rule inet filter input tcp dport 0-65535 accept")
			},
			want: []string{"unauthorized", "unauthorized"},
			check: func(t *testing.T, w *cmWorld) {
				for _, d := range w.deviations() {
					if d.State == model.DeviationResolved {
						t.Errorf("deviation %s (%s) resolved by a table created again: %+v", d.ID,
							d.Change, d)
					}
				}
			},
		},
		{
			name: "an exact plan out of its window names its CR, not a similar plan in the window",
			run: func(w *cmWorld) {
				fw := w.device("fw1", cmFiled)
				a := w.approved(cmFiled, win(model.CR{Device: "fw1",
					Changes: []model.PlannedChange{planAdd(input, "udp dport 123 accept")}}))
				b := w.approved(cmFiled, model.CR{Device: "fw1",
					WindowStart: cmT.Add(30 * time.Minute), WindowEnd: cmT.Add(time.Hour),
					Changes: []model.PlannedChange{planAdd(input, "tcp dport 993 accept")}})
				ids = []string{a.ID, b.ID}
				w.nft(fw, cmT.Add(time.Minute), "add rule inet filter input tcp dport 993 accept")
			},
			want: []string{"out_of_window"},
			check: func(t *testing.T, w *cmWorld) {
				if d := w.deviations()[0]; d.CR != ids[1] {
					t.Errorf("out_of_window names %q, want %s", d.CR, ids[1])
				}
			},
		},
		{
			name: "a rollback is observed, not declared, while the rule is live",
			run: func(w *cmWorld) {
				fw := w.device("fw1", cmFiled)
				w.nft(fw, cmT, "add rule inet filter input tcp dport 993 accept")
				dev := w.deviations()[0]
				_, err := w.s.DeviationAction(w.ctx, store.DeviationActionRequest{Tenant: w.tenant,
					ID: dev.ID, Action: store.DeviationResolve, By: "bob", Why: "trust me",
					Resolution: model.ResolvedRollback}, cmT.Add(time.Minute))
				if !errors.Is(err, store.ErrState) {
					t.Errorf("rollback declared while the rule is live: %v, want refused", err)
				}
			},
			want: []string{"unauthorized"},
			check: func(t *testing.T, w *cmWorld) {
				if d := w.deviations()[0]; d.State != model.DeviationOpen {
					t.Errorf("deviation %+v", d)
				}
			},
		},
		{
			name: "a retroactive CR must plan the change it resolves, on that device",
			run: func(w *cmWorld) {
				fw := w.device("fw1", cmFiled)
				w.device("fw2", cmFiled)
				w.nft(fw, cmT, "add rule inet filter input tcp dport 6100 accept")
				other := w.approved(cmT.Add(time.Minute), model.CR{Device: "fw2",
					WindowStart: cmT.Add(-time.Hour), WindowEnd: cmT.Add(time.Hour),
					Changes: []model.PlannedChange{planAdd(input, "tcp dport 6100 accept")}})
				wrong := w.approved(cmT.Add(time.Minute), model.CR{Device: "fw1",
					WindowStart: cmT.Add(-time.Hour), WindowEnd: cmT.Add(time.Hour),
					Changes: []model.PlannedChange{planAdd(input, "tcp dport 6200 accept")}})
				dev := w.deviations()[0]
				for _, c := range []*model.CR{other, wrong} {
					_, err := w.s.DeviationAction(w.ctx, store.DeviationActionRequest{Tenant: w.tenant,
						ID: dev.ID, Action: store.DeviationResolve, By: "bob", Why: "after the fact",
						Resolution: model.ResolvedRetroactiveCR, CR: c.ID}, cmT.Add(2*time.Minute))
					if err == nil {
						t.Errorf("resolved %s with %s, which does not plan it on fw1", dev.ID, c.ID)
					}
				}
			},
			want: []string{"unauthorized"},
			check: func(t *testing.T, w *cmWorld) {
				if d := w.deviations()[0]; d.State != model.DeviationOpen {
					t.Errorf("deviation %+v", d)
				}
				origin(t, w, "fw1", "tcp dport 6100 accept", model.SourceUnauthorized, "")
			},
		},
		{
			name: "with members in the policy, outsiders neither reject, cancel nor resolve",
			run: func(w *cmWorld) {
				w.policy(func(p *model.Policy) {
					p.Members = []model.Member{{Name: "alice", Roles: []string{"engineer"}},
						{Name: "bob", Roles: []string{"cab"}}}
				})
				fw := w.device("fw1", cmFiled)
				c := w.mustCR(cmFiled, win(model.CR{Device: "fw1", Requester: "alice",
					Changes: []model.PlannedChange{planAdd(input, "tcp dport 443 accept")}}))
				ids = []string{c.ID}
				for _, action := range []string{store.CRReject, store.CRCancel} {
					_, err := w.s.CRAction(w.ctx, store.CRActionRequest{Tenant: w.tenant, ID: c.ID,
						Action: action, By: "mallory", Why: "because"}, cmFiled)
					if !errors.Is(err, store.ErrForbidden) {
						t.Errorf("%s by an outsider: %v, want forbidden", action, err)
					}
				}
				w.nft(fw, cmT.Add(-30*time.Minute), "add rule inet filter input tcp dport 23 accept")
				dev := w.deviations()[0]
				_, err := w.s.DeviationAction(w.ctx, store.DeviationActionRequest{Tenant: w.tenant,
					ID: dev.ID, Action: store.DeviationResolve, By: "mallory", Why: "fine",
					Resolution: model.ResolvedAcceptedRisk}, cmT)
				if !errors.Is(err, store.ErrForbidden) {
					t.Errorf("resolve by an outsider: %v, want forbidden", err)
				}
			},
			want: []string{"unauthorized"},
			check: func(t *testing.T, w *cmWorld) {
				if c := w.getCR(ids[0]); c.State == model.CRRejected || c.State == model.CRCancelled {
					t.Errorf("CR %s is %s", c.ID, c.State)
				}
			},
		},
	}
	if len(cases) < 25 {
		t.Fatalf("%d scenarios, want at least 25", len(cases))
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ids = nil
			w := newWorld(t, l, "s"+strings.Repeat("0", 2-len(itoa(i+1)))+itoa(i+1))
			w.t = t
			tc.run(w)
			ds := w.deviations()
			if got := devKinds(ds); !slices.Equal(got, tc.want) {
				t.Errorf("deviations %v, want %v:%s", got, tc.want, describeDevs(ds))
			}
			if tc.check != nil {
				tc.check(t, w)
			}
		})
	}
}

func itoa(n int) string {
	return strings.TrimLeft(string([]byte{byte('0' + n/100), byte('0' + n/10%10), byte('0' + n%10)}), "0")
}

// TestChangeRequestRefusals: CRs the aggregator refuses, with the reason.
func TestChangeRequestRefusals(t *testing.T) {
	l := newLab(t)
	w := newWorld(t, l, "refusals")
	w.device("fw1", cmFiled)
	cases := []struct {
		name string
		cr   model.CR
		want string
	}{
		{"unknown device", win(model.CR{Device: "fw9", Changes: []model.PlannedChange{planAdd(input, "accept")}}),
			"not enrolled"},
		{"unknown tag", win(model.CR{Targets: model.Targets{Tags: []string{"nowhere"}},
			Changes: []model.PlannedChange{planAdd(input, "accept")}}), "no device"},
		{"window in the past", model.CR{Device: "fw1", WindowStart: cmFiled.Add(-3 * time.Hour),
			WindowEnd: cmFiled.Add(-2 * time.Hour), Changes: []model.PlannedChange{planAdd(input, "accept")}},
			"window ended"},
		{"rule that does not parse", win(model.CR{Device: "fw1",
			Changes: []model.PlannedChange{planAdd(input, "tcp dport 443 acept")}}), "column 15"},
		{"unknown set", win(model.CR{Device: "fw1",
			Changes: []model.PlannedChange{planAdd(input, "ip saddr @nosuch drop")}}), "nosuch"},
		{"standard CR without template", win(model.CR{Device: "fw1", Type: model.CRStandard,
			Changes: []model.PlannedChange{planAdd(input, "accept")}}), "template"},
	}
	for _, tc := range cases {
		_, err := w.cr(cmFiled, tc.cr)
		if !errors.Is(err, store.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrInvalid mentioning %q", tc.name, err, tc.want)
		}
	}
}
