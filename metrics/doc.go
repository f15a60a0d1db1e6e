// Package metrics exports procyon's counters to Prometheus.
//
// NewCollector returns a prometheus.Collector over a procedure.Engine, a
// durable.Store and a remote.Dispatcher (each optional). It reads their
// Stats at scrape time: nothing is instrumented on the hot paths, and
// there is no global state. Register it on a registry of your own:
//
//	reg := prometheus.NewRegistry()
//	reg.MustRegister(metrics.NewCollector(metrics.Options{Engine: eng, Store: store, Dispatcher: disp}))
//	http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
//
// # Metrics
//
// Names below use the default namespace "procyon" (Options.Namespace).
// Histograms come from procyon's power-of-two latency histograms: bucket
// upper bounds are 1 µs, 2 µs, 4 µs, ... (exclusive), in seconds; the
// widest bucket is open and counts only in +Inf.
//
//	name                                           type       labels
//	Engine
//	procyon_procedure_submitted_total              counter    type
//	procyon_procedure_finished_total               counter    type, outcome (succeeded, rolled_back, aborted, bypassed)
//	procyon_procedure_step_failures_total          counter    type
//	procyon_procedure_timed_out_total              counter    type
//	procyon_procedure_steps_total                  counter    type, direction (forward, rollback)
//	procyon_procedure_step_retries_total           counter    type
//	procyon_procedure_step_duration_seconds        histogram  type
//	procyon_procedure_duration_seconds             histogram  type
//	procyon_procedure_event_waits_total            counter    type
//	procyon_procedure_event_wait_seconds           histogram  type
//	procyon_procedure_active                       gauge      status (runnable, waiting, suspended, ...)
//	procyon_procedure_oldest_active_age_seconds    gauge
//	procyon_procedure_quarantined_trees            gauge
//	procyon_procedure_run_queue_length             gauge
//	procyon_procedure_workers                      gauge
//	procyon_procedure_stuck_workers                gauge
//	procyon_procedure_lock_waiting                 gauge
//	procyon_procedure_lock_wait_seconds            histogram
//	procyon_procedure_recovered                    gauge
//	procyon_procedure_recovery_duration_seconds    gauge
//	Store
//	procyon_store_commits_total                    counter
//	procyon_store_aborts_total                     counter
//	procyon_store_commit_seconds                   histogram
//	procyon_store_snapshots_total                  counter
//	procyon_store_snapshot_failures_total          counter
//	procyon_store_snapshot_size_bytes              gauge
//	procyon_store_snapshot_duration_seconds        gauge
//	procyon_store_damaged_files                    gauge
//	procyon_store_recovery_duration_seconds        gauge
//	Store's WAL (a store in a directory only)
//	procyon_wal_records_total                      counter
//	procyon_wal_bytes_total                        counter
//	procyon_wal_fsyncs_total                       counter
//	procyon_wal_fsync_duration_seconds             histogram
//	procyon_wal_failures_total                     counter
//	procyon_wal_segments                           gauge
//	procyon_wal_records_per_fsync                  gauge
//	Dispatcher
//	procyon_remote_node_live                       gauge      node
//	procyon_remote_operations_queued               gauge      node
//	procyon_remote_operations_in_flight            gauge      node
//	procyon_remote_batches_total                   counter    node
//	procyon_remote_operations_sent_total           counter    node
//	procyon_remote_request_failures_total          counter    node
//	procyon_remote_batch_retries_total             counter    node
//	procyon_remote_round_trip_seconds              histogram  node
//
// A procedure's duration runs from its creation (a root's submission) to
// its end: a root's when its tree completed, whatever the outcome; a
// child's when it succeeded. An event wait runs from the commit of the
// step that returned WaitEvent to the wake-up (by the signal, a timeout
// the type handles, or a recovery that found the event signalled; 0 if
// it was signalled already); waits ended by a failure, an abort or a
// bypass are not observed. Both are measured on the engine's clock
// (procedure.Options.Clock). Procedures waiting for an event or a timer
// are procyon_procedure_active{status="suspended"}. Store commit latency
// is per group commit (one fsync on the WAL), from append to durable;
// its _count is the number of group commits, so
// rate(procyon_store_commits_total) / rate(procyon_store_commit_seconds_count)
// is the mean group size; records per fsync over a window is
// rate(procyon_wal_records_total) / rate(procyon_wal_fsyncs_total) (the
// gauge is the mean since the store opened). The oldest age is measured
// against the system clock.
package metrics
