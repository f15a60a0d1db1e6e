package durable

// Test-only access to a MemPersistence's records and snapshots.

// records returns how many records are held (for tests of truncation).
func (m *MemPersistence) records() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.mu.recs)
}

// setSnapshotBytes replaces the content of the snapshot at seq (for tests
// of damaged snapshots).
func (m *MemPersistence) setSnapshotBytes(seq uint64, data []byte) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range m.mu.snaps {
		if m.mu.snaps[i].seq == seq {
			m.mu.snaps[i].data = data
			return true
		}
	}
	return false
}
