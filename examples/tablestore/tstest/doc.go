// Package tstest runs a whole table store in one process for tests: a
// master and region servers on loopback HTTP (httptest servers, remote.HTTP
// between them, the client's row API over HTTP), a real temporary
// directory as the shared root, short leases, and the faults the tests
// need: a region server killed, a master stopped and started again on the
// same root, the master's reports dropped (procedures waiting for remote
// outcomes stay waiting), a server's operations dropped.
//
//	c := tstest.New(t, tstest.Options{})       // a master and rs1..rs3, lease 300 ms
//	id, _ := c.Master().CreateTable(ctx, master.CreateTable{...}, procedure.SubmitOptions{})
//	err := c.Master().Wait(ctx, id)
//	err = c.Client.Put(ctx, "t", rows...)       // the row API over HTTP
//	c.Kill("rs2"); c.RestartMaster(); c.DropReports(true)
//	c.Eventually(10*time.Second, "what", func() error { ... })
//
// A kill is a process's death as the rest of the store sees it: the
// server's address stops answering at once (connections are dropped, no
// answer is sent), its remote node stops without telling the master
// (outcomes not reported are lost; the master learns of the death when
// the lease expires), and its regions are closed without a flush
// (region.Close writes nothing: what was acknowledged is in each region's
// log, as after SIGKILL), which releases their LOCK files as the OS
// releases a dead process's flocks.
package tstest
