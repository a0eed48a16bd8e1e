package ingest

import (
	"context"
	"sync"
	"time"

	"github.com/fenceline/fenceline/aggregator/model"
	"github.com/fenceline/fenceline/shared/event"
)

// FindingRecorder is implemented by a store that records findings about a device's record
// as deviations (the replicated store does).
type FindingRecorder interface {
	RecordFinding(ctx context.Context, tenant, device string, kind model.DeviationKind,
		detail string, seq uint64, now time.Time) (string, error)
}

// findingEvery bounds how often one device's finding of one kind is proposed: the store
// counts repeats on the open deviation, and a flood of forged messages must not become
// a flood of log entries.
const findingEvery = time.Minute

// findings rate-limits finding proposals per device and kind.
type findings struct {
	mu   sync.Mutex
	last map[string]time.Time
}

// record proposes a finding for the device the topic names, at most once per
// findingEvery per device and kind. Only enrolled devices get one (the store refuses
// others).
func (in *Ingester) recordFinding(topic string, kind model.DeviationKind, detail string, seq uint64) {
	rec, ok := in.store.(FindingRecorder)
	if !ok {
		return
	}
	tenant, device, _, err := event.ParseDeviceTopic(topic)
	if err != nil {
		return
	}
	now := time.Now()
	key := tenant + "/" + device + "/" + string(kind)
	in.finds.mu.Lock()
	if in.finds.last == nil {
		in.finds.last = map[string]time.Time{}
	}
	if t, ok := in.finds.last[key]; ok && now.Sub(t) < findingEvery {
		in.finds.mu.Unlock()
		return
	}
	in.finds.last[key] = now
	in.finds.mu.Unlock()
	ctx, cancel := context.WithTimeout(in.ctx, 5*time.Second)
	defer cancel()
	id, err := rec.RecordFinding(ctx, tenant, device, kind, detail, seq, now)
	if err != nil {
		in.log.Debug("finding not recorded", "topic", topic, "kind", kind, "err", err)
		return
	}
	in.log.Warn("deviation recorded for the device's record", "tenant", tenant, "device", device,
		"kind", kind, "deviation", id)
}
