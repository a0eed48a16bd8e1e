package store

import "github.com/hashicorp/raft"

// LastEntry returns the newest entry of the node's raft log.
func LastEntry(s *Store) ([]byte, error) {
	var l raft.Log
	idx, err := s.logStore.LastIndex()
	if err != nil {
		return nil, err
	}
	if err := s.logStore.GetLog(idx, &l); err != nil {
		return nil, err
	}
	return l.Data, nil
}
