package barrier_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/procyon-dev/procyon/barrier"
	"github.com/procyon-dev/procyon/barrier/embedetcd"
)

// testTTL is the session lease TTL in etcd tests: small, so kill tests
// see a dead party's keys vanish quickly.
const testTTL = 2 * time.Second

func TestMain(m *testing.M) {
	if role := os.Getenv(helperEnv); role != "" {
		os.Exit(helperMain(role))
	}
	code := m.Run()
	shared.stop()
	os.Exit(code)
}

// shared is the embedded etcd server of this test binary, started by the
// first test that needs it. Tests isolate themselves with key prefixes.
var shared sharedServer

type sharedServer struct {
	once sync.Once
	dir  string
	srv  *embedetcd.Server
	err  error
}

func sharedEtcd(t testing.TB) *embedetcd.Server {
	t.Helper()
	shared.once.Do(func() {
		shared.dir, shared.err = os.MkdirTemp("", "barrier-etcd-")
		if shared.err != nil {
			return
		}
		shared.srv, shared.err = embedetcd.Start(embedetcd.Options{Dir: shared.dir, NoFsync: true})
	})
	if shared.err != nil {
		t.Fatalf("embedded etcd: %v", shared.err)
	}
	return shared.srv
}

func (s *sharedServer) stop() {
	if s.srv != nil {
		s.srv.Close()
	}
	if s.dir != "" {
		os.RemoveAll(s.dir)
	}
}

var prefixSeq atomic.Int64

type etcdEnv struct {
	srv    *embedetcd.Server
	cli    *clientv3.Client
	prefix string
}

func newEtcdEnv(t testing.TB) *etcdEnv {
	srv := sharedEtcd(t)
	cli, err := srv.Client(context.Background())
	if err != nil {
		t.Fatalf("etcd client: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	name := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())
	return &etcdEnv{srv: srv, cli: cli, prefix: fmt.Sprintf("/test/%s-%d/", name, prefixSeq.Add(1))}
}

func (e *etcdEnv) name() string { return "etcd" }

func (e *etcdEnv) options() barrier.EtcdOptions {
	return barrier.EtcdOptions{Prefix: e.prefix, TTL: testTTL}
}

func (e *etcdEnv) transport(t testing.TB) barrier.Transport {
	tr, err := barrier.NewEtcd(e.cli, e.options())
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// expireMember revokes the lease behind members/<member>, as if the
// member's session had expired.
func (e *etcdEnv) expireMember(t testing.TB, member string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := e.cli.Get(ctx, e.prefix+"members/"+member)
	if err != nil || len(resp.Kvs) == 0 {
		t.Fatalf("member %s's key: %v (%d keys)", member, err, len(resp.Kvs))
	}
	if _, err := e.cli.Revoke(ctx, clientv3.LeaseID(resp.Kvs[0].Lease)); err != nil {
		t.Fatalf("revoke member %s's lease: %v", member, err)
	}
}

// keys returns every key under the environment's prefix except live
// sessions' (members/ and coord/).
func (e *etcdEnv) procKeys(t testing.TB) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := e.cli.Get(ctx, e.prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, kv := range resp.Kvs {
		k := strings.TrimPrefix(string(kv.Key), e.prefix)
		if !strings.HasPrefix(k, "members/") && !strings.HasPrefix(k, "coord/") {
			out = append(out, k)
		}
	}
	return out
}

// waitNoProcKeys waits until procKeys is empty, watching for changes.
func (e *etcdEnv) waitNoProcKeys(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	for {
		resp, err := e.cli.Get(ctx, e.prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
		if err != nil {
			t.Fatal(err)
		}
		if len(e.procKeys(t)) == 0 {
			return
		}
		wch := e.cli.Watch(ctx, e.prefix, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1))
		select {
		case <-wch:
		case <-ctx.Done():
			t.Fatalf("keys left: %q", e.procKeys(t))
		}
	}
}
