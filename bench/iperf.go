package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"time"
)

// iperfResult is what one iperf3 client run measured, from the receiving
// side (for -R that is the client itself).
type iperfResult struct {
	bitsPerSecond float64
	bytes         int64
	seconds       float64
	retransmits   int64
}

// gbps is the throughput in Gbit/s.
func (r iperfResult) gbps() float64 { return r.bitsPerSecond / 1e9 }

// iperfReport is the part of `iperf3 --json` output the harness reads.
type iperfReport struct {
	End struct {
		SumSent struct {
			Retransmits int64 `json:"retransmits"`
		} `json:"sum_sent"`
		SumReceived struct {
			Seconds       float64 `json:"seconds"`
			Bytes         int64   `json:"bytes"`
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum_received"`
	} `json:"end"`
	Error string `json:"error"`
}

// parseIperf reads the --json report of an iperf3 client.
func parseIperf(data []byte) (iperfResult, error) {
	var rep iperfReport
	if err := json.Unmarshal(data, &rep); err != nil {
		return iperfResult{}, fmt.Errorf("parse iperf3 JSON: %w", err)
	}
	if rep.Error != "" {
		return iperfResult{}, fmt.Errorf("iperf3: %s", rep.Error)
	}
	s := rep.End.SumReceived
	if s.Seconds <= 0 || s.Bytes <= 0 || s.BitsPerSecond <= 0 {
		return iperfResult{}, errors.New("parse iperf3 JSON: no received bytes in end.sum_received")
	}
	return iperfResult{
		bitsPerSecond: s.BitsPerSecond,
		bytes:         s.Bytes,
		seconds:       s.Seconds,
		retransmits:   rep.End.SumSent.Retransmits,
	}, nil
}

// iperfClientArgs is the iperf3 client command line of one throughput run.
func iperfClientArgs(host string, port int, d time.Duration, streams int, reverse bool) []string {
	secs := max(int(d/time.Second), 1) // iperf3 3.12 takes whole seconds
	args := []string{"iperf3", "--client", host, "--port", strconv.Itoa(port),
		"--time", strconv.Itoa(secs), "--json", "--connect-timeout", "5000"}
	if streams > 1 {
		args = append(args, "--parallel", strconv.Itoa(streams))
	}
	if reverse {
		args = append(args, "--reverse")
	}
	return args
}

// runIperf runs an iperf3 client command (built by iperfClientArgs, maybe
// wrapped in nsenter) and parses its report.
func runIperf(ctx context.Context, argv []string, d time.Duration) (iperfResult, error) {
	ctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.WaitDelay = 2 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	res, err := parseIperf(stdout.Bytes())
	if err != nil {
		if runErr != nil {
			return iperfResult{}, fmt.Errorf("%w (exit: %v; stderr: %s)", err, runErr, bytes.TrimSpace(stderr.Bytes()))
		}
		return iperfResult{}, err
	}
	return res, nil
}
