// etcdload drives etcd through its native gRPC client (clientv3), the way etcd's
// own users do, so `make bench` compares raftkv with etcd at its best and not only
// through the JSON gateway (which understates etcd by 20-45%).
//
// Closed loop: -clients workers, each with one request in flight, spread over
// -conns gRPC connections, for -duration. Prints one JSON object: ops, errors,
// ops/s, p50/p99/max in milliseconds.
//
// -op failover is the failover load instead (bench/failover.py): -writers closed-loop
// writers and -readers linearizable readers over every endpoint, retrying after an
// error as bench/failover.py's Python clients do, each success printed as one line
// "put|get <started> <finished>" (Unix nanoseconds) until stdin closes.
//
// Built offline in GOPATH mode against Debian's golang-etcd-server-dev (bench/run.py).
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io/ioutil"
	"math/rand"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/clientv3"
)

func main() {
	endpoints := flag.String("endpoints", "127.0.0.1:2379", "comma-separated host:port of etcd members")
	op := flag.String("op", "put", "put | get (linearizable) | get-serializable")
	clients := flag.Int("clients", 16, "concurrent requests (closed loop)")
	conns := flag.Int("conns", 0, "gRPC connections (default: min(clients, 16))")
	duration := flag.Duration("duration", 10*time.Second, "how long to run")
	valueSize := flag.Int("value-size", 256, "bytes per value")
	keys := flag.Int("keys", 10000, "key space")
	cacert := flag.String("cacert", "", "CA bundle (enables TLS)")
	cert := flag.String("cert", "", "client certificate")
	key := flag.String("key", "", "client key")
	user := flag.String("user", "", "user (etcd auth)")
	password := flag.String("password", "", "password (etcd auth)")
	writers := flag.Int("writers", 8, "-op failover: closed-loop writers")
	readers := flag.Int("readers", 8, "-op failover: closed-loop linearizable readers")
	flag.Parse()

	if *conns <= 0 {
		*conns = *clients
		if *conns > 16 {
			*conns = 16
		}
	}
	cfg := clientv3.Config{
		Endpoints:   strings.Split(*endpoints, ","),
		DialTimeout: 5 * time.Second,
		Username:    *user,
		Password:    *password,
	}
	if *cacert != "" {
		pool := x509.NewCertPool()
		pem, err := ioutil.ReadFile(*cacert)
		if err != nil || !pool.AppendCertsFromPEM(pem) {
			fail("cannot read CA bundle %s: %v", *cacert, err)
		}
		tc := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		if *cert != "" {
			pair, err := tls.LoadX509KeyPair(*cert, *key)
			if err != nil {
				fail("cannot load client certificate: %v", err)
			}
			tc.Certificates = []tls.Certificate{pair}
		}
		cfg.TLS = tc
	}
	cs := make([]*clientv3.Client, *conns)
	for i := range cs {
		c, err := clientv3.New(cfg)
		if err != nil {
			fail("connect: %v", err)
		}
		defer c.Close()
		cs[i] = c
	}
	value := strings.Repeat("v", *valueSize)
	if *op == "failover" {
		failover(cs, *writers, *readers, value)
		return
	}
	// Warm up every connection (and the auth token) before the clock starts.
	for _, c := range cs {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if _, err := c.Put(ctx, "bench-warmup", value); err != nil {
			fail("warm-up: %v", err)
		}
		cancel()
	}

	var mu sync.Mutex
	var latencies []time.Duration
	errors := 0
	deadline := time.Now().Add(*duration)
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < *clients; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			c := cs[w%len(cs)]
			rng := rand.New(rand.NewSource(int64(w) + 1))
			local := make([]time.Duration, 0, 4096)
			localErrors := 0
			for time.Now().Before(deadline) {
				k := fmt.Sprintf("bench-%d", rng.Intn(*keys))
				t0 := time.Now()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				var err error
				switch *op {
				case "put":
					_, err = c.Put(ctx, k, value)
				case "get":
					_, err = c.Get(ctx, k)
				case "get-serializable":
					_, err = c.Get(ctx, k, clientv3.WithSerializable())
				default:
					cancel()
					fail("unknown -op %q", *op)
				}
				cancel()
				if err != nil {
					localErrors++
					continue
				}
				local = append(local, time.Since(t0))
			}
			mu.Lock()
			latencies = append(latencies, local...)
			errors += localErrors
			mu.Unlock()
		}(w)
	}
	wg.Wait()
	elapsed := time.Since(start)
	sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
	pct := func(p float64) float64 {
		if len(latencies) == 0 {
			return 0
		}
		i := int(p * float64(len(latencies)-1))
		return float64(latencies[i].Microseconds()) / 1000
	}
	out := map[string]interface{}{
		"op": *op, "clients": *clients, "conns": *conns,
		"ops": len(latencies), "errors": errors,
		"seconds":    elapsed.Seconds(),
		"ops_per_s":  float64(len(latencies)) / elapsed.Seconds(),
		"p50_ms":     pct(0.50),
		"p99_ms":     pct(0.99),
		"max_ms":     pct(1.0),
	}
	json.NewEncoder(os.Stdout).Encode(out)
}

// failover runs until stdin closes: clientv3 with every endpoint (its balancer moves
// to another member when one fails), a 2 s timeout per attempt and a 20-100 ms pause
// after an error, like bench/failover.py's clients; every success goes to stdout.
func failover(cs []*clientv3.Client, writers, readers int, value string) {
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	record := func(kind string, started time.Time) {
		finished := time.Now()
		mu.Lock()
		fmt.Fprintf(out, "%s %d %d\n", kind, started.UnixNano(), finished.UnixNano())
		mu.Unlock()
	}
	stop := make(chan struct{})
	go func() { // stdin closed: the measurement is over
		ioutil.ReadAll(os.Stdin)
		close(stop)
	}()
	stopped := func() bool {
		select {
		case <-stop:
			return true
		default:
			return false
		}
	}
	var wg sync.WaitGroup
	client := func(i int, kind string) {
		defer wg.Done()
		c := cs[i%len(cs)]
		rng := rand.New(rand.NewSource(int64(i) + 1))
		for n := 0; !stopped(); {
			k := fmt.Sprintf("failover/%d/%d", i%max(writers, 1), n%100)
			started := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			var err error
			if kind == "put" {
				_, err = c.Put(ctx, k, value)
			} else {
				_, err = c.Get(ctx, k)
			}
			cancel()
			if err != nil {
				time.Sleep(time.Duration(20+rng.Intn(81)) * time.Millisecond)
				continue
			}
			record(kind, started)
			n++
		}
	}
	for i := 0; i < writers; i++ {
		wg.Add(1)
		go client(i, "put")
	}
	for i := 0; i < readers; i++ {
		wg.Add(1)
		go client(writers+i, "get")
	}
	ticker := time.NewTicker(10 * time.Millisecond)
	defer ticker.Stop()
	for !stopped() {
		<-ticker.C
		mu.Lock()
		out.Flush()
		mu.Unlock()
	}
	wg.Wait()
	mu.Lock()
	out.Flush()
	mu.Unlock()
}

func max(a, b int) int {
	if a > b {
		return a
	}
	return b
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "etcdload: "+format+"\n", args...)
	os.Exit(1)
}
