package proctest_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"

	"github.com/procyon-dev/procyon/durable"
	"github.com/procyon-dev/procyon/procedure"
	"github.com/procyon-dev/procyon/procedure/proctest"
)

// createTable is the type under test: state 0 writes the table, state 1
// its region, state 2 finishes; Rollback undoes states 0 and 1.
type createTable struct {
	tables  *durable.Collection[string, int]    // table -> regions
	regions *durable.Collection[string, string] // region -> table
}

func (c *createTable) Execute(ctx context.Context, env *procedure.Env, state int, table *string) (procedure.Next, error) {
	switch state {
	case 0:
		env.Write(func(tx *durable.Tx) error { return c.tables.Put(tx, *table, 1) })
		return procedure.GoTo(1), nil
	case 1:
		env.Write(func(tx *durable.Tx) error { return c.regions.Put(tx, *table+"/r1", *table) })
		return procedure.GoTo(2), nil
	}
	return procedure.Done(), nil
}

func (c *createTable) Rollback(ctx context.Context, env *procedure.Env, state int, table *string) error {
	switch state {
	case 0:
		env.Write(func(tx *durable.Tx) error { return c.tables.Delete(tx, *table) })
	case 1:
		env.Write(func(tx *durable.Tx) error { return c.regions.Delete(tx, *table+"/r1") })
	}
	return nil
}

// leakyCreateTable has a bug: its Rollback of state 1 forgets the region.
type leakyCreateTable struct{ *createTable }

func (l leakyCreateTable) Rollback(ctx context.Context, env *procedure.Env, state int, table *string) error {
	if state == 1 {
		return nil
	}
	return l.createTable.Rollback(ctx, env, state, table)
}

// catalog is what Setup builds, again after every restart.
type catalog struct {
	s      *durable.Store
	c      *createTable
	create *procedure.Type[int, string]
}

// catalogHarness describes the procedure under test to the kit: sm makes
// the type from the collections.
func catalogHarness(sm func(c *createTable) procedure.StateMachine[int, string]) proctest.Harness[catalog] {
	return proctest.Harness[catalog]{
		Setup: func(s *durable.Store, e *procedure.Engine) catalog {
			c := &createTable{
				tables:  durable.NewCollection[string, int](s, "tables", nil),
				regions: durable.NewCollection[string, string](s, "regions", nil),
			}
			return catalog{s, c, procedure.Register(e, "create-table", sm(c), nil)}
		},
		Submit: func(ctx context.Context, w catalog) (procedure.ID, error) {
			return w.create.Submit(ctx, "users", procedure.SubmitOptions{})
		},
		State: func(w catalog) any {
			v := w.s.Latest()
			return struct{ Tables, Regions int }{w.c.tables.Len(v), w.c.regions.Len(v)}
		},
	}
}

// Check a procedure type with the kit: RecoveryAndDoubleExecution crashes
// the process before and after every step's commit and checks that the
// procedure ends as it does without crashes; RollbackAndDoubleExecution
// fails each step in turn and checks that the rollback leaves the
// metadata as it was before. In a test, pass the *testing.T:
//
//	func TestCreateTable(t *testing.T) { proctest.RollbackAndDoubleExecution(t, h) }
//
// Here the kit passes createTable and catches the bug in leakyCreateTable.
func Example() {
	good := catalogHarness(func(c *createTable) procedure.StateMachine[int, string] { return c })
	leaky := catalogHarness(func(c *createTable) procedure.StateMachine[int, string] { return leakyCreateTable{c} })
	fmt.Println(runCheck(func(t testing.TB) { proctest.RecoveryAndDoubleExecution(t, good) }))
	fmt.Println(runCheck(func(t testing.TB) { proctest.RollbackAndDoubleExecution(t, good) }))
	fmt.Println(runCheck(func(t testing.TB) { proctest.RollbackAndDoubleExecution(t, leaky) }))
	// Output:
	// recovery: a crash before and after each of 3 step commits, in 4 restarts; 6 steps run in all, 3 without crashes
	// rollback: 3 forward steps; 6 runs rolled back, 0 retried past the point of no return; 9 crashes during rollbacks
	// FAIL: failure at step 3 of 3: after the rollback the environment is
	// {Tables:0 Regions:1}
	// before it was
	// {Tables:0 Regions:0}
}

// runCheck runs check as go test runs a test, and returns the last
// message it logged, or why it failed.
func runCheck(check func(t testing.TB)) string {
	t := &exampleT{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		check(t)
	}()
	<-done
	return t.out
}

// exampleT stands in for the *testing.T of a test: it implements the
// methods the kit calls.
type exampleT struct {
	testing.TB // nil: only the methods below are called
	out        string
}

func (t *exampleT) Helper()                           {}
func (t *exampleT) Logf(format string, args ...any)   { t.out = fmt.Sprintf(format, args...) }
func (t *exampleT) Fatal(args ...any)                 { t.fail(fmt.Sprint(args...)) }
func (t *exampleT) Fatalf(format string, args ...any) { t.fail(fmt.Sprintf(format, args...)) }

func (t *exampleT) fail(msg string) {
	t.out = "FAIL: " + msg
	runtime.Goexit()
}
