// Package master is the table store's control plane: a catalog of
// tables, regions and snapshots in a durable store, the procedures that
// change it, and a remote.Dispatcher that drives the region servers
// (package regionserver) with remote operations.
//
// # Usage
//
//	m, err := master.New(master.Options{Root: root, Transport: &remote.HTTP{}})
//	err = m.Start(ctx)                  // opens the store, resumes the procedures, dispatches
//	http.Serve(ln, m.Handler())          // admin API, /metrics, and the dispatcher for the servers
//	id, err := m.CreateTable(ctx, master.CreateTable{Name: "t", Splits: keys}, procedure.SubmitOptions{})
//	err = m.Wait(ctx, id)
//	defer m.Stop()
//
// The operator's API and web UI (package server) show and act on the
// master's engine; procyon serve mounts them beside Handler, on one
// listener (Handler keeps /ts/ and /remote/, the server the rest):
//
//	srv, err := server.New(server.Options{Engine: m.Engine(), Dispatcher: m.Dispatcher(),
//		Gatherer: m.Metrics(), Types: m.SubmitTypes()})
//
// # Model
//
// A region is offline, opening, open or closing; when it is not offline
// its record names the server and the server's incarnation that was asked
// to open it. Assign-region opens a region on the least loaded live
// server (its regions as the records said at most a second ago, plus the
// picks since) and retries elsewhere until it is open; unassign-region
// closes it. Create, enable, disable, delete and split hold their table's lock
// exclusively; snapshot-table holds it shared (a second snapshot of the
// table runs, a split waits); assign and unassign hold their region's
// lock, which implies a shared table lock. When a server incarnation dies
// (its lease expires, or it registers again as a new incarnation), the
// dispatcher fails its outstanding operations and the master starts its
// server-crash procedure, which reassigns the regions recorded on that
// incarnation. Snapshot-table follows HBase's SnapshotProcedure (see its
// type's doc); its files are tablestore.Layout's.
//
// # Crash model
//
// Every step commits its catalog writes with its procedure state; after a
// restart the procedures resume and the dispatcher resends the operations
// outstanding (servers run each at most once). Steps that read the
// servers' liveness are retried until the dispatcher has loaded it.
// Region data is the servers' (package region); the master writes it
// itself only for a disabled table's snapshot, a clone and a split, each
// step redoing its files from the start when run again.
package master
