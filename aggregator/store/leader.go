package store

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// leadership follows this node's raft role for the components that may run on one node
// only, and remembers the last leader seen so that a node cut off from its cluster can
// still say where the leader was.
type leadership struct {
	notify chan bool // raft's NotifyCh: true on gaining leadership, false on losing it
	obs    chan raft.Observation
	stopCh chan struct{}
	done   chan struct{}
	once   sync.Once

	raft     *raft.Raft
	observer *raft.Observer

	mu       sync.Mutex
	isLeader bool
	watchers map[chan bool]struct{}
	lastID   raft.ServerID
	lastAddr raft.ServerAddress
	changes  uint64
}

func newLeadership(notify chan bool) *leadership {
	return &leadership{
		notify: notify, obs: make(chan raft.Observation, 16), stopCh: make(chan struct{}),
		done: make(chan struct{}), watchers: map[chan bool]struct{}{},
	}
}

// start begins following r; stop ends it.
func (l *leadership) start(r *raft.Raft, log *slog.Logger) {
	l.raft = r
	l.observer = raft.NewObserver(l.obs, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	r.RegisterObserver(l.observer)
	go l.run(log)
}

func (l *leadership) run(log *slog.Logger) {
	defer close(l.done)
	for {
		select {
		case <-l.stopCh:
			return
		case lead := <-l.notify:
			l.set(lead)
			if lead {
				log.Info("this node is the raft leader", "term", l.raft.CurrentTerm())
			} else {
				log.Info("this node lost raft leadership", "term", l.raft.CurrentTerm())
			}
		case o := <-l.obs:
			lo := o.Data.(raft.LeaderObservation)
			if lo.LeaderID != "" {
				l.mu.Lock()
				l.lastID, l.lastAddr = lo.LeaderID, lo.LeaderAddr
				l.mu.Unlock()
			}
		}
	}
}

func (l *leadership) stop() {
	l.once.Do(func() {
		close(l.stopCh)
		if l.raft != nil {
			<-l.done
			l.raft.DeregisterObserver(l.observer)
		}
		l.set(false)
	})
}

// set records the role and tells every watcher, keeping only the newest value in each
// watcher's one-slot channel.
func (l *leadership) set(lead bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if lead != l.isLeader {
		l.changes++
	}
	l.isLeader = lead
	for w := range l.watchers {
		select {
		case <-w:
		default:
		}
		w <- lead
	}
}

// watch returns a channel that holds the newest role (true: leader), starting with the
// current one, and a function that stops the watch.
func (l *leadership) watch() (<-chan bool, func()) {
	w := make(chan bool, 1)
	l.mu.Lock()
	w <- l.isLeader
	l.watchers[w] = struct{}{}
	l.mu.Unlock()
	return w, func() {
		l.mu.Lock()
		delete(l.watchers, w)
		l.mu.Unlock()
	}
}

// last is the newest leader this node has seen, which may no longer lead.
func (l *leadership) last() (raft.ServerID, raft.ServerAddress) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lastID, l.lastAddr
}

// RunWhileLeader runs fn each time this node becomes the raft leader, with a context that
// ends when it loses leadership (or ctx ends), so that exactly one node runs fn at a time
// (apart from the moments a deposed leader takes to notice). Before each start it waits
// until this node has applied every entry committed before, so fn reads current state.
// It returns when ctx has ended and fn has returned; the caller owns the goroutine.
func (s *Store) RunWhileLeader(ctx context.Context, name string, fn func(ctx context.Context)) {
	roles, stop := s.leader.watch()
	defer stop()
	log := s.log.With("leader_only", name)
	for {
		select {
		case <-ctx.Done():
			return
		case lead := <-roles:
			if !lead {
				continue
			}
		}
		if err := s.raft.Barrier(s.cfg.ApplyTimeout).Error(); err != nil {
			log.Debug("not starting: barrier failed", "err", err)
			continue
		}
		lctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			fn(lctx)
		}()
		log.Info("leader-only component started")
		lost := false
		for !lost {
			select {
			case <-ctx.Done():
				cancel()
				<-done
				return
			case lead := <-roles:
				lost = !lead
			case <-done:
				// fn returned by itself; run it again on the next leadership.
				lost = true
			}
		}
		cancel()
		<-done
		log.Info("leader-only component stopped")
	}
}

// IsLeader reports whether this node is the raft leader now.
func (s *Store) IsLeader() bool { return s.raft.State() == raft.Leader }

// WaitLeader waits until the cluster has a leader.
func (s *Store) WaitLeader(ctx context.Context) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		if addr, _ := s.raft.LeaderWithID(); addr != "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for raft leader: %w", ctx.Err())
		case <-t.C:
		}
	}
}
