#pragma once
// Process: run a C++ function in another process and manage it like a thread
// (Python's multiprocessing.Process).
//
//   void worker(int n) { std::printf("Worker: %d\n", n); }
//   mproc::Process p(worker, 3);
//   p.start();
//   p.join();                       // p.exitcode() == 0
//
// A Process object is a handle: copies refer to the same process, as Python references do, and
// destroying the last handle neither kills the child nor makes mproc forget it. When `main`
// returns, mproc terminates the daemon children that are still running and joins the others
// (Python's exit-time behaviour), so a program may start children and never join them.
//
// Subclassing: derive from Process and override run(); the default name then uses the class
// name (`Worker-1`), taken from the dynamic type (namespaces and template arguments dropped) or
// from an override of type_name(). Copying a subclass object through a Process slices it, as
// any C++ copy does: keep subclass objects by value or by pointer to the subclass.
//
// Exit codes (exitcode()), as Python reports them:
//   nullopt   not started, or still running
//   0         the target returned (its return value, if any, is discarded)
//   n         the child called mproc::exit(n) or std::exit(n); the OS keeps the low 8 bits, so
//             exit(256) gives 0 and exit(-1) gives 255
//   1         the target threw; "Process <name>:" and "<exception type>: <what()>" went to the
//             child's stderr first
//   -N        the child was killed by signal N (terminate() gives -15, kill() -9)
//
// Start methods (see context.hpp): under fork the child is a copy of the parent, so any callable
// works as a target, capturing lambdas included. Under spawn and forkserver only a reference to
// code can travel: the target must be a function (free or static member) or a captureless lambda,
// and every argument must be Encodable (codec.hpp); a Process subclass travels when it is
// registered with MPROC_REGISTER_PROCESS (its members through a cereal-style serialize()).
// Anything else is a UsageError from start() before a process is created, or a compile-time error
// through a context whose start method is known at compile time (mproc::spawn_context).
//
// Differences from Python, by design:
//  - Misuse raises mproc::UsageError (Python: AssertionError or ValueError) with Python's message.
//  - exitcode(), pid() and ident() are std::optional (Python: None).
//  - join(timeout) takes a std::chrono duration.
//  - The child's stdin is /dev/null, as in Python. The child never runs the parent's atexit
//    handlers or static destructors: it ends with _exit() after flushing stdout and stderr.
#include <chrono>
#include <concepts>
#include <functional>
#include <iosfwd>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "mproc/authkey.hpp"
#include "mproc/cpu.hpp"
#include "mproc/detail/exit_reason.hpp"
#include "mproc/detail/target.hpp"
#include "mproc/detail/timeout.hpp"
#include "mproc/errors.hpp"

namespace mproc {

namespace detail {
struct ProcessState;
struct ProcessAccess;
}

// How a child process comes to exist (Python's start methods; context.hpp chooses the default).
enum class StartMethod {
    fork,        // a copy of the parent (fork(2))
    spawn,       // a fresh execution of the same program, which becomes the child in mproc::init
    forkserver,  // forked by a single-threaded server process started on first use
};

// Options for a Process, used with designated initializers:
//   mproc::Process d({.name = "daemon", .daemon = true}, daemon_main);
struct ProcessOptions {
    // Empty: the default name, "<TypeName>-<identity>" (Process-1, Process-2:1, Worker-3).
    std::string name{};
    // Unset: inherited from the creating process (false in the main process).
    std::optional<bool> daemon{};
    // Unset: the default start method when start() is called (context.hpp).
    std::optional<StartMethod> start_method{};
    // Kill the child (SIGKILL) when its parent dies, even by SIGKILL, so that it is never left
    // orphaned. Unset: on for daemon processes, off for the others. Linux ties this to the thread
    // that called start(): a child started from a thread that ends first is killed then too.
    std::optional<bool> die_with_parent{};
};

class Process {
public:
    // A process with no target: run() does nothing unless a subclass overrides it.
    Process();
    explicit Process(ProcessOptions options);

    // A process that runs target(args...). The callable and the arguments are decay-copied into
    // the Process, as std::thread does; the target's return value is discarded.
    template <class F, class... Args>
        requires std::invocable<std::decay_t<F>&, std::decay_t<Args>&...>
    explicit Process(F&& target, Args&&... args) : Process(ProcessOptions{}) {
        set_target(detail::make_target(std::forward<F>(target), std::forward<Args>(args)...));
    }

    template <class F, class... Args>
        requires std::invocable<std::decay_t<F>&, std::decay_t<Args>&...>
    Process(ProcessOptions options, F&& target, Args&&... args) : Process(std::move(options)) {
        set_target(detail::make_target(std::forward<F>(target), std::forward<Args>(args)...));
    }

    Process(const Process&) = default;
    Process(Process&&) noexcept = default;
    Process& operator=(const Process&) = default;
    Process& operator=(Process&&) noexcept = default;
    virtual ~Process();

    // The child's work. The default calls the target with its arguments.
    virtual void run();

    // Starts the child. Flushes stdout and stderr first, so that buffered output is not printed
    // twice. Throws UsageError when started twice, from a process other than the creator, or from
    // a daemonic process; OSError when the OS refuses to create a process.
    void start();

    // Waits for the child to end and reaps it. May be called many times.
    void join();
    // Waits at most `timeout`; returns either way (check exitcode() or is_alive()).
    template <class Rep, class Period>
    void join(std::chrono::duration<Rep, Period> timeout) {
        join_for(detail::to_timeout(timeout).value_or(std::chrono::nanoseconds::max()));
    }

    bool is_alive() const;

    void terminate();  // SIGTERM: no exit handlers run in the child; exitcode becomes -15
    void kill();       // SIGKILL
    void interrupt();  // SIGINT (Python 3.14)

    // Releases the process's resources (the sentinel). UsageError if the child is still running;
    // afterwards every other method throws UsageError("process object is closed").
    void close();

    std::string name() const;
    void set_name(std::string name);
    bool daemon() const;
    void set_daemon(bool daemonic);  // only before start()
    // The start method this process uses (or will use: the default when none was chosen).
    StartMethod start_method() const;
    std::optional<int> pid() const;
    std::optional<int> ident() const { return pid(); }
    std::optional<int> exitcode() const;
    // A file descriptor that becomes readable when the child has ended (a pidfd on Linux).
    // Owned by the Process: valid until close(). UsageError before start().
    int sentinel() const;
    AuthKey authkey() const;
    void set_authkey(AuthKey key);

    // Python's repr: <Process name='Process-1' pid=1119 parent=1118 stopped exitcode=-SIGTERM>
    std::string repr() const;
    friend std::ostream& operator<<(std::ostream& os, const Process& p);

protected:
    // The class name used in default names and in repr(). The default is the dynamic type's
    // unqualified name.
    virtual std::string type_name() const;

private:
    friend struct detail::ProcessAccess;
    explicit Process(std::shared_ptr<detail::ProcessState> state) noexcept;

    void set_target(std::shared_ptr<detail::Target> target);
    void join_for(std::chrono::nanoseconds timeout);

    std::shared_ptr<detail::ProcessState> state_;
};

// The Process object of the caller: "MainProcess" in the main process.
Process& current_process();

// The parent of the calling process (name, pid, sentinel; is_alive() and join() work), or
// nullopt in the main process.
std::optional<Process> parent_process();

// The live children of the calling process. Like Python, it reaps the ones that have ended.
std::vector<Process> active_children();


// Ends the calling process with exit code `code` (exit(true) is 1, exit(false) 0, as Python's
// bool is an int). In a child started by mproc it unwinds the child's stack to the bootstrap
// (destructors run, as Python's sys.exit raises SystemExit), which then runs the exit sequence
// and _exit(code). In the main process it calls std::exit(code).
// The unwinding uses an object that is not a std::exception; a `catch (...)` that does not
// rethrow stops it.
[[noreturn]] void exit(int code = 0);

// Ends the calling process with exit code 1 after writing `reason` and a newline to its stderr
// (Python's sys.exit("message") and sys.exit([1, 2, 3])). The reason is anything fmt can format
// (strings, numbers that are not integers, ranges and tuples: {1, 2, 3} prints "[1, 2, 3]") or
// anything with an operator<<. In a child the stack unwinds first, as for exit(int), and the
// bootstrap writes the reason; in the main process it is written, then std::exit(1) is called.
template <detail::ExitReason Reason>
[[noreturn]] void exit(const Reason& reason) {
    detail::exit_with_reason(detail::exit_reason_text(reason));
}

// What mproc::exit throws in a child (Python's SystemExit). Deliberately not a std::exception, so
// that `catch (const std::exception&)` lets it through to the bootstrap. It carries either an exit
// code or a reason to print (code 1), as Python's SystemExit.code is an int or another object.
class SystemExit {
public:
    explicit SystemExit(int code) noexcept : code_(code) {}
    explicit SystemExit(std::string reason) : code_(1), reason_(std::move(reason)) {}
    int code() const noexcept { return code_; }
    // The text the bootstrap writes to stderr before the process ends; nullopt for exit(int).
    const std::optional<std::string>& reason() const noexcept { return reason_; }

private:
    int code_;
    std::optional<std::string> reason_;
};

// The door for the start methods that execute the program anew (spawn, and the forkserver's
// server): call it first in main, before anything else runs (Python's `if __name__ ==
// "__main__"` guard). In a process that mproc started this way it never returns: the process
// becomes the child (or the fork server) and ends when that work is done. Otherwise it records
// argv, installs mproc's exit-time handling, and returns at once. It prints nothing.
void init(int argc, char** argv);

}  // namespace mproc

#include "mproc/detail/process_registry.hpp"
