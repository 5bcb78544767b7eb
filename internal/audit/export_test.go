package audit

// GroupCounts says how many batches and writes the store has sent, once its writers are idle.
func (s *Store) GroupCounts() (batches, sent int, idle bool) {
	s.group.mu.Lock()
	defer s.group.mu.Unlock()
	return s.group.batches, s.group.sent, s.group.writers == 0 && len(s.group.queue) == 0
}

// ArchivedJobsSQL is the archive's key lookup as the store runs it.
var ArchivedJobsSQL = qArchivedJobs
