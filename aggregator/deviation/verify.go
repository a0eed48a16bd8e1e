package deviation

import (
	"fmt"
	"strings"
	"time"

	"github.com/fenceline/fenceline/aggregator/model"
)

// RolledBackOutcome is the verification outcome of a CR whose changes all landed and were
// all undone inside the window (by its rollback plan): nothing unauthorized remains.
const RolledBackOutcome = "rolled_back"

// CloseWindow verifies a CR whose window closed at now: for every planned change on
// every target device it records what was seen, and decides the outcome. Every change
// landed and still in place: verified. A change never seen on a device: incomplete, with
// one incomplete deviation numbered n listing what is missing. A change that landed
// differently (and nothing missing): differs. Everything landed and was rolled back:
// rolled_back. Only approved and implemented CRs are verified; cr is not modified. An
// emergency CR that was never completely implemented is due for review `review` after
// its window closed.
func CloseWindow(cr *model.CR, now time.Time, n uint64, review time.Duration) (*model.CR, *model.Deviation) {
	if !cr.State.Authorizing() {
		return nil, nil
	}
	c := cr.Clone()
	v := &model.Verification{At: now}
	var missing []string
	differs, rolled := false, false
	for i := range c.Changes {
		p := &c.Changes[i]
		for _, dev := range c.Devices {
			ev := model.Evidence{Device: dev, Change: i + 1, Status: model.Missing}
			if o := p.On(dev); o != nil {
				ev.Status, ev.Event, ev.Seq, ev.Observed, ev.Deviation = o.Outcome, o.Event, o.Seq,
					o.Observed, o.Deviation
				switch o.Outcome {
				case model.LandedDifferently:
					differs = true
				case model.RolledBack:
					rolled = true
				}
			} else {
				missing = append(missing, fmt.Sprintf("%s on %s", p.Describe(), dev))
			}
			v.Evidence = append(v.Evidence, ev)
		}
	}
	var d *model.Deviation
	switch {
	case len(missing) > 0:
		v.Outcome = model.Incomplete
		d = &model.Deviation{
			Tenant: c.Tenant, ID: DeviationID(n), Kind: model.IncompleteCR,
			State: model.DeviationOpen, Device: strings.Join(missingDevices(c), ","), CR: c.ID,
			Planned: strings.Join(missing, "; "),
			Detail: fmt.Sprintf("window of %s closed at %s with %d planned change(s) not observed: %s",
				c.ID, c.WindowEnd.Format(time.RFC3339), len(missing), strings.Join(missing, "; ")),
			Raised: now,
		}
		v.Deviation = d.ID
	case differs:
		v.Outcome = model.Differs
	case rolled:
		v.Outcome = RolledBackOutcome
	default:
		v.Outcome = model.Verified
	}
	c.Verification = v
	if c.Type == model.CREmergency && c.ReviewDue.IsZero() && c.Review == nil {
		c.ReviewDue = c.WindowEnd.Add(review)
	}
	if v.Outcome == model.Verified {
		c.SetState(model.CRVerified, model.System,
			"window closed; every planned change observed on every target device", now)
	} else {
		c.SetState(model.CRFailed, model.System, "window closed: "+v.Outcome, now)
	}
	return c, d
}

// missingDevices are the target devices with a planned change never seen, in order.
func missingDevices(c *model.CR) []string {
	var out []string
	for _, dev := range c.Devices {
		for i := range c.Changes {
			if c.Changes[i].On(dev) == nil {
				out = append(out, dev)
				break
			}
		}
	}
	return out
}

// ReviewDue returns the emergency_review_due deviation numbered n for an emergency CR
// whose review deadline passed without a review.
func ReviewDue(cr *model.CR, now time.Time, n uint64) *model.Deviation {
	return &model.Deviation{
		Tenant: cr.Tenant, ID: DeviationID(n), Kind: model.EmergencyReviewDue,
		State: model.DeviationOpen, Device: strings.Join(cr.Devices, ","), CR: cr.ID,
		Detail: fmt.Sprintf("emergency change %s was implemented at %s and not reviewed by %s",
			cr.ID, cr.ImplementedAt.Format(time.RFC3339), cr.ReviewDue.Format(time.RFC3339)),
		Raised: now,
	}
}
