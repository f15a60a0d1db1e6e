package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/procyon-dev/procyon/durable"
)

// storeMetrics reads durable.Store.Stats and the WAL's counters it
// carries.
type storeMetrics struct {
	s *durable.Store
	descs
	commits, aborts, commitSeconds, snapshots, snapshotErrs     *prometheus.Desc
	snapshotBytes, snapshotSeconds, damaged, recoverSeconds     *prometheus.Desc
	walAppends, walBytes, walSyncs, walSyncSeconds, walFailures *prometheus.Desc
	walSegments, walRecordsPerSync                              *prometheus.Desc
}

func newStoreMetrics(ns string, s *durable.Store) *storeMetrics {
	m := &storeMetrics{s: s}
	st, wal := ns+"_store", ns+"_wal"
	m.commits = m.add(st, "commits_total", "Transactions committed.")
	m.aborts = m.add(st, "aborts_total", "Transactions that failed or were dropped.")
	m.commitSeconds = m.add(st, "commit_seconds", "Group commit latency: how long batches of transactions made durable together took from append to durable.")
	m.snapshots = m.add(st, "snapshots_total", "Snapshots written.")
	m.snapshotErrs = m.add(st, "snapshot_failures_total", "Snapshots that failed.")
	m.snapshotBytes = m.add(st, "snapshot_size_bytes", "Size of the newest snapshot.")
	m.snapshotSeconds = m.add(st, "snapshot_duration_seconds", "How long the newest snapshot written since the store opened took (0: none yet).")
	m.damaged = m.add(st, "damaged_files", "Damaged files the store opened without (see Store.Damage).")
	m.recoverSeconds = m.add(st, "recovery_duration_seconds", "How long opening the store took: loading the newest snapshot and replaying the log.")
	m.walAppends = m.add(wal, "records_total", "Records appended to the log.")
	m.walBytes = m.add(wal, "bytes_total", "Bytes appended to the log, framing included.")
	m.walSyncs = m.add(wal, "fsyncs_total", "Fsyncs of batches of records.")
	m.walSyncSeconds = m.add(wal, "fsync_duration_seconds", "Fsync latency.")
	m.walFailures = m.add(wal, "failures_total", "Write or fsync failures (the first one is final).")
	m.walSegments = m.add(wal, "segments", "Segment files in the log.")
	m.walRecordsPerSync = m.add(wal, "records_per_fsync", "Mean records made durable per fsync since the store opened.")
	return m
}

func (m *storeMetrics) collect(ch chan<- prometheus.Metric) {
	st := m.s.Stats()
	ch <- counter(m.commits, st.Commits)
	ch <- counter(m.aborts, st.Aborts)
	ch <- constHistogram(m.commitSeconds, st.CommitLatency[:], st.GroupTime)
	ch <- counter(m.snapshots, st.Snapshots)
	ch <- counter(m.snapshotErrs, st.SnapshotErrs)
	ch <- gauge(m.snapshotBytes, float64(st.SnapshotSize))
	ch <- gauge(m.snapshotSeconds, st.SnapshotTime.Seconds())
	ch <- gauge(m.damaged, float64(st.Damaged))
	ch <- gauge(m.recoverSeconds, st.RecoverTime.Seconds())
	if w := st.WAL; w != nil {
		ch <- counter(m.walAppends, w.Appends)
		ch <- counter(m.walBytes, w.Bytes)
		ch <- counter(m.walSyncs, w.Syncs)
		ch <- constHistogram(m.walSyncSeconds, w.SyncLatency[:], w.SyncTime)
		ch <- counter(m.walFailures, w.Failures)
		ch <- gauge(m.walSegments, float64(w.Segments))
		ch <- gauge(m.walRecordsPerSync, w.RecordsPerSync)
	}
}
