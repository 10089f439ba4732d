package main

import (
	"os/exec"
	"slices"
	"syscall"
	"testing"
)

func TestPerfTop(t *testing.T) {
	report := []byte(`# To display the perf.data header info, please use --header/--header-only options.
#
# Samples: 7K of event 'cpu-clock:pppH'
# Overhead  Command  Shared Object      Symbol                          IPC   [IPC Coverage]
#
    15.09%  slirp    [kernel.kallsyms]  [k] finish_task_switch.isra.0   -      -            
     9.32%  slirp    slirp              [.] runtime.memmove             -      -            

     5.28%  slirp    slirp              [.] runtime.memclrNoHeapPointers  -      -
`)
	want := []string{
		"15.09% slirp [kernel.kallsyms] [k] finish_task_switch.isra.0",
		"9.32% slirp slirp [.] runtime.memmove",
	}
	if got := perfTop(report, 2); !slices.Equal(got, want) {
		t.Errorf("perfTop = %q, want %q", got, want)
	}
	if got := perfTop(report, 10); len(got) != 3 {
		t.Errorf("perfTop(10) = %q, want all 3 sample lines", got)
	}
}

func TestDiedOf(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Process.Signal(syscall.SIGINT)
	_ = cmd.Wait()
	if !diedOf(cmd.ProcessState, syscall.SIGINT) {
		t.Errorf("sleep killed by SIGINT: diedOf = false (%v)", cmd.ProcessState)
	}
	if diedOf(cmd.ProcessState, syscall.SIGTERM) || diedOf(nil, syscall.SIGINT) {
		t.Errorf("diedOf matched the wrong signal or no process")
	}
	ok := exec.Command("true")
	if err := ok.Run(); err != nil {
		t.Skipf("no true(1): %v", err)
	}
	if diedOf(ok.ProcessState, syscall.SIGINT) {
		t.Errorf("a clean exit counted as a signal")
	}
}
