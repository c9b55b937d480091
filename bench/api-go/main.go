// bench/api's second client: the same series as its Python client (ListDynos, then GetDyno of
// the dynos it is given, one call at a time on one connection), through the stubs protoc-gen-go
// and protoc-gen-go-grpc make of proto/hostd.proto with Debian's grpc-go: what a control plane
// written in Go would use. bench/api builds it (GOPATH mode, as tests/integration/
// test_go_client.py builds tests/go) and runs it from its measuring process, so that it runs
// where that process is placed.
//
// It reads one JSON object on stdin ({"lists": N, "gets": [ids], "warmup": W, "dynos": N}) and
// writes one on stdout: per series the samples (ns), hostd's and its own CPU time per call
// (/proc/PID/task/*/schedstat, every thread) and the rest of the machine's (/proc/stat), the
// same figures as the Python client's. On a failure it names the step on stderr and exits 1.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"

	pb "hostdtest/hostdpb"
)

type input struct {
	Lists  int      `json:"lists"`
	Gets   []string `json:"gets"`
	Warmup int      `json:"warmup"`
	Dynos  int      `json:"dynos"`
}

type series struct {
	SamplesNs   []int64 `json:"samples_ns"`
	HostdCPUNs  float64 `json:"hostd_cpu_ns"`
	ClientCPUNs float64 `json:"client_cpu_ns"`
	OthersCores float64 `json:"others_cores"`
	StealCores  float64 `json:"steal_cores"`
	WallNs      float64 `json:"wall_ns"`
}

func fail(step string, err error) {
	fmt.Fprintf(os.Stderr, "bench/api-go: %s: %v\n", step, err)
	os.Exit(1)
}

// cpuNs is a process's CPU time so far, all its threads (schedstat's first field).
func cpuNs(pid int) int64 {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	var total int64
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue // a thread that ended meanwhile
		}
		f := strings.Fields(string(b))
		if len(f) > 0 {
			n, _ := strconv.ParseInt(f[0], 10, 64)
			total += n
		}
	}
	return total
}

// machineBusy is the machine's busy and steal time so far, in ns (/proc/stat's cpu line; the
// kernel counts in USER_HZ, 100 on Linux).
func machineBusy() (busy, steal float64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	f := strings.Fields(strings.SplitN(string(b), "\n", 2)[0])
	var v []float64
	for _, x := range f[1:] {
		n, _ := strconv.ParseFloat(x, 64)
		v = append(v, n)
	}
	if len(v) < 8 {
		return 0, 0
	}
	const tick = 1e9 / 100
	var sum float64
	for _, x := range v[:8] {
		sum += x
	}
	return (sum - v[3] - v[4]) * tick, v[7] * tick
}

// measure times each call of fn alone, one after the other; no garbage collection within the
// series (the Python client turns its collector off too), one before it.
func measure(hostd, k int, fn func(i int) error) (series, error) {
	runtime.GC()
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	me := os.Getpid()
	s := series{SamplesNs: make([]int64, 0, k)}
	h0, c0 := cpuNs(hostd), cpuNs(me)
	b0, st0 := machineBusy()
	w0 := time.Now()
	for i := 0; i < k; i++ {
		t0 := time.Now()
		err := fn(i)
		s.SamplesNs = append(s.SamplesNs, time.Since(t0).Nanoseconds())
		if err != nil {
			return s, err
		}
	}
	h1, c1 := cpuNs(hostd), cpuNs(me)
	b1, st1 := machineBusy()
	wall := float64(time.Since(w0).Nanoseconds())
	s.HostdCPUNs = float64(h1-h0) / float64(k)
	s.ClientCPUNs = float64(c1-c0) / float64(k)
	others := (b1 - b0) - float64(h1-h0) - float64(c1-c0)
	if others < 0 {
		others = 0
	}
	s.OthersCores = others / wall
	s.StealCores = (st1 - st0) / wall
	s.WallNs = wall / float64(k)
	return s, nil
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: api-go SOCKET HOSTD-PID < series.json")
		os.Exit(2)
	}
	sock := os.Args[1]
	hostd, err := strconv.Atoi(os.Args[2])
	if err != nil {
		fail("hostd's pid", err)
	}
	var in input
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		fail("read the series", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	conn, err := grpc.DialContext(ctx, "passthrough:///hostd", grpc.WithInsecure(), grpc.WithBlock(),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}))
	cancel()
	if err != nil {
		fail("dial "+sock, err)
	}
	defer conn.Close()
	c := pb.NewHostdClient(conn)
	bg := context.Background()

	list := func(int) error {
		r, err := c.ListDynos(bg, &pb.ListDynosRequest{})
		if err != nil {
			return err
		}
		if len(r.GetDynos()) != in.Dynos {
			return fmt.Errorf("a List answered %d dynos, not the %d started", len(r.GetDynos()), in.Dynos)
		}
		return nil
	}
	get := func(i int) error {
		id := in.Gets[i%len(in.Gets)]
		r, err := c.GetDyno(bg, &pb.GetDynoRequest{Id: id})
		if err != nil {
			return err
		}
		d := r.GetDyno()
		if d.GetSpec().GetId() != id || d.GetState() != pb.DynoState_DYNO_STATE_UP {
			return fmt.Errorf("Get %s answered %s in state %v", id, d.GetSpec().GetId(), d.GetState())
		}
		return nil
	}
	for i := 0; i < in.Warmup; i++ {
		if err := list(i); err != nil {
			fail("warm-up ListDynos", err)
		}
	}
	for i := 0; i < in.Warmup*10; i++ {
		if err := get(i); err != nil {
			fail("warm-up GetDyno", err)
		}
	}
	out := map[string]series{}
	if out["list"], err = measure(hostd, in.Lists, list); err != nil {
		fail("ListDynos", err)
	}
	if out["get"], err = measure(hostd, len(in.Gets), get); err != nil {
		fail("GetDyno", err)
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fail("write the results", err)
	}
}
