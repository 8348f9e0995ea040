package Welby::Nginx;

# Small end-to-end test harness for ngx_http_welby_module, in the spirit of
# nginx-tests' Test::Nginx (own code).  Debian-packaged Perl modules only.
#
#   use lib 't/lib';
#   use Welby::Nginx qw(http http_get parse_response);
#
#   my $t = Welby::Nginx->new();
#   $t->write_file_expand('nginx.conf', <<'EOF');
#   %%TEST_GLOBALS%%
#   events {}
#   http {
#       %%TEST_GLOBALS_HTTP%%
#       server { listen 127.0.0.1:%%PORT_8080%%; location / { welby on; ... } }
#   }
#   EOF
#   $t->run()->plan(3);          # plan(N) declares N + 1 tests (teardown check)
#   my $r = parse_response(http_get('/'));
#
# At the end of the test file nginx is stopped and one extra assertion checks
# error.log / stderr.log / sanitizer logs for [alert], [crit], [emerg] and
# sanitizer reports.

use strict;
use warnings;

use Exporter qw(import);
use Cwd qw(abs_path);
use Errno qw(EINTR EAGAIN);
use Fcntl qw(:flock O_CREAT O_RDWR);
use File::Basename qw(dirname);
use File::Path qw(make_path);
use File::Spec;
use File::Temp qw(tempdir);
use IO::Select;
use IO::Socket::IP;
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep time);

use Test::More ();

our @EXPORT_OK = qw(http https http_get https_get http_req
    parse_response dechunk);

our $NGINX   = $ENV{WELBY_NGINX} || '/usr/sbin/nginx';
our $NJS     = $ENV{WELBY_NJS_MODULE}
    || '/usr/lib/nginx/modules/ngx_http_js_module.so';
our $REPO    = abs_path(File::Spec->catdir(dirname(__FILE__), '..', '..', '..'));
our $ECHO_JS = "$REPO/t/echo.js";
our $LOCKDIR = '/tmp/welby-test-ports';

my @INSTANCES;      # every harness object, checked and stopped in END
my $LAST;           # most recently created object: default port for http()

# a write to a connection nginx has closed must not kill the test, and
# an interrupted test must still stop nginx (END blocks run on exit)
$SIG{PIPE} = 'IGNORE';
$SIG{$_} ||= sub { exit 1 } for qw(INT TERM HUP);

=head1 CONSTRUCTOR

=head2 new([js => 0])

Creates a temporary test directory (removed at exit unless
WELBY_TEST_KEEP=1, in which case its path is printed).  BAIL_OUTs when the
module (WELBY_MODULE or <repo>/build/ngx_http_welby_module.so) is missing,
and when the njs module (the echo backend, C<libnginx-mod-http-js>) is:
C<make deps> installs it, so its absence is a broken machine, never a
reason to skip.  C<js =E<gt> 0> is for a test that needs no njs: it is
then neither required nor loaded.

=cut

sub new {
    my ($class, %opts) = @_;

    my $module = $ENV{WELBY_MODULE}
        || "$REPO/build/ngx_http_welby_module.so";
    Test::More::BAIL_OUT("welby module not found at $module: run make first")
        unless -f $module;
    Test::More::BAIL_OUT("nginx binary not found at $NGINX") unless -x $NGINX;
    my $js = exists $opts{js} ? $opts{js} : 1;
    Test::More::BAIL_OUT("njs module not found at $NJS: run make deps "
        . "(libnginx-mod-http-js)") if $js && !-f $NJS;

    my $keep = $ENV{WELBY_TEST_KEEP} ? 1 : 0;
    my $dir = tempdir('welby-test-XXXXXXXX', TMPDIR => 1, CLEANUP => !$keep);
    chmod 0755, $dir;   # workers run as an unprivileged user when root
    Test::More::diag("test directory: $dir") if $keep;

    my $self = bless {
        dir     => $dir,
        module  => abs_path($module),
        ports   => {},      # placeholder number => real port
        locks   => {},      # real port => lock file handle
        pid     => undef,
        planned => 0,
        checked => 0,
        js      => $js,
    }, $class;

    push @INSTANCES, $self;
    $LAST = $self;
    return $self;
}

=head1 METHODS

=head2 testdir()

The temporary directory (no trailing slash).

=cut

sub testdir { $_[0]{dir} }

=head2 has_js()

True when the njs module is loaded by %%TEST_GLOBALS%% (and the echo
backend is available through C<js_content echo.echo>): always, unless
new() was given C<js =E<gt> 0>.

=cut

sub has_js { $_[0]{js} }

=head2 port($n)

The real, locked, free TCP port on 127.0.0.1 behind placeholder
%%PORT_$n%%.  Allocated on first use.

=cut

sub port {
    my ($self, $n) = @_;
    $self->{ports}{$n} //= $self->_alloc_port();
    return $self->{ports}{$n};
}

sub _alloc_port {
    my ($self) = @_;

    make_path($LOCKDIR, { mode => 01777 }) unless -d $LOCKDIR;

    # stay below the kernel's ephemeral range (32768-60999 by default)
    for (1 .. 2000) {
        my $port = 15000 + int(rand(17000));
        next if $self->{locks}{$port};

        sysopen(my $fh, "$LOCKDIR/$port.lock", O_CREAT | O_RDWR, 0666)
            or next;
        unless (flock($fh, LOCK_EX | LOCK_NB)) {
            close $fh;
            next;
        }

        my $s = IO::Socket::IP->new(
            LocalHost => '127.0.0.1', LocalPort => $port, Proto => 'tcp',
            ReuseAddr => 1, Listen => 1,
        );
        unless ($s) {
            close $fh;
            next;
        }
        close $s;

        $self->{locks}{$port} = $fh;    # lock is held until we exit
        return $port;
    }

    die "cannot find a free port on 127.0.0.1\n";
}

=head2 write_file($name, $content)

Writes a file (relative to the test directory; directories are created).

=cut

sub write_file {
    my ($self, $name, $content) = @_;
    my $path = "$self->{dir}/$name";
    make_path(dirname($path));
    open my $fh, '>', $path or die "cannot write $path: $!\n";
    binmode $fh;
    print $fh $content;
    close $fh;
    return $self;
}

=head2 write_file_expand($name, $content)

Like write_file, after replacing the placeholders:

  %%TEST_GLOBALS%%       load_module lines (welby, and njs if installed),
                         pid, error_log <dir>/error.log debug, daemon off,
                         worker_processes 1
  %%TEST_GLOBALS_HTTP%%  access_log and all *_temp_path inside the test
                         directory, and "js_import echo from t/echo.js"
                         when njs is loaded
  %%PORT_NNNN%%          a free locked port (see port())
  %%TESTDIR%%            the test directory
  %%ECHO_JS%%            absolute path of t/echo.js

=cut

sub write_file_expand {
    my ($self, $name, $content) = @_;

    $content =~ s/%%TEST_GLOBALS%%/$self->_test_globals()/ge;
    $content =~ s/%%TEST_GLOBALS_HTTP%%/$self->_test_globals_http()/ge;
    $content =~ s/%%PORT_(\d+)%%/$self->port($1)/ge;
    $content =~ s/%%TESTDIR%%/$self->{dir}/g;
    $content =~ s/%%ECHO_JS%%/$ECHO_JS/g;

    return $self->write_file($name, $content);
}

sub _test_globals {
    my ($self) = @_;
    my $d = $self->{dir};
    my $s = "load_module $self->{module};\n";
    $s .= "load_module $NJS;\n" if $self->{js};
    $s .= "pid $d/nginx.pid;\n"
        . "error_log $d/error.log debug;\n"
        . "daemon off;\n"
        . "master_process on;\n"
        . "worker_processes 1;\n";
    return $s;
}

sub _test_globals_http {
    my ($self) = @_;
    my $d = $self->{dir};
    my $s = "access_log $d/access.log;\n"
        . "client_body_temp_path $d/client_body_temp;\n"
        . "proxy_temp_path $d/proxy_temp;\n"
        . "fastcgi_temp_path $d/fastcgi_temp;\n"
        . "uwsgi_temp_path $d/uwsgi_temp;\n"
        . "scgi_temp_path $d/scgi_temp;\n";
    $s .= "js_import echo from $ECHO_JS;\n" if $self->{js};
    return $s;
}

=head2 read_file($name)

Contents of a file in the test directory ('' if it does not exist).

=cut

sub read_file {
    my ($self, $name) = @_;
    my $path = $name =~ m{^/} ? $name : "$self->{dir}/$name";
    open my $fh, '<', $path or return '';
    binmode $fh;
    local $/;
    my $c = <$fh>;
    return defined $c ? $c : '';
}

# environment for nginx processes (sanitizer runtime when WELBY_SANITIZE=1)
=head2 nginx_env()

The environment nginx runs with: empty, or under WELBY_SANITIZE=1 the
sanitizer runtimes to preload and their log paths (for tests that start
nginx through another program, such as the demo script).

=cut

sub nginx_env { shift->_nginx_env(@_) }

sub _nginx_env {
    my ($self) = @_;
    return () unless $ENV{WELBY_SANITIZE};

    my $san = "$self->{dir}/sanitizer";
    unless (-d $san) {
        mkdir $san;
        chmod 01777, $san;  # workers run as an unprivileged user
    }

    my @pre;
    for my $lib ('libasan.so', 'libubsan.so') {
        chomp(my $p = `gcc -print-file-name=$lib`);
        push @pre, $p if $p && $p ne $lib && -e $p;
    }

    return (
        LD_PRELOAD    => join(':', @pre),
        ASAN_OPTIONS  => "detect_leaks=0:abort_on_error=0:log_path=$san/asan",
        UBSAN_OPTIONS => "print_stacktrace=1:log_path=$san/ubsan",
    );
}

=head2 demo_start()

Starts C<make run>'s script (conf/demo/run) on free ports with its folder
under the test directory, in the background, and waits up to 10 s for its
HTTPS port.  Returns a hash: pid, dir, https, http, backend, up (true
when it listens).  Its output goes to demo.out in the test directory.
Sets the WELBY_DEMO_* variables of this process as well.

=cut

sub demo_start {
    my ($self) = @_;
    my %demo = (dir => "$self->{dir}/demo");
    @demo{qw(https http backend metrics)} =
        map { $self->port($_) } (8443, 8080, 8090, 9145);

    # in this process too: conf/demo/mint-token finds the demo's keys
    # through WELBY_DEMO_DIR
    $ENV{WELBY_DEMO_DIR} = $demo{dir};
    $ENV{WELBY_DEMO_HTTPS_PORT} = $demo{https};
    $ENV{WELBY_DEMO_HTTP_PORT} = $demo{http};
    $ENV{WELBY_DEMO_BACKEND_PORT} = $demo{backend};
    $ENV{WELBY_DEMO_METRICS_PORT} = $demo{metrics};

    my $pid = fork() // die "fork: $!";
    if ($pid == 0) {
        my %env = $self->nginx_env();
        @ENV{keys %env} = values %env;
        open STDOUT, '>', "$self->{dir}/demo.out" or die;
        open STDERR, '>&', \*STDOUT or die;
        exec("$REPO/conf/demo/run") or die "exec: $!";
    }
    $demo{pid} = $pid;

    for (1 .. 100) {
        last if waitpid($pid, WNOHANG) != 0;
        $demo{up} = IO::Socket::IP->new(PeerAddr => "127.0.0.1:$demo{https}")
            and last;
        sleep 0.1;
    }

    return %demo;
}

=head2 demo_stop(%demo)

Ctrl-C for the demo of demo_start(): SIGINT, then up to 10 s for it to
exit.  Returns its wait status, or undef if it did not exit (it is then
killed).

=cut

sub demo_stop {
    my ($self, %demo) = @_;
    kill 'INT', $demo{pid};

    for (1 .. 100) {
        return $? if waitpid($demo{pid}, WNOHANG) == $demo{pid};
        sleep 0.1;
    }

    kill 'KILL', $demo{pid};
    waitpid($demo{pid}, 0);
    return undef;
}

=head2 test_config([$name])

Runs C<nginx -t> on the (already written) config file, default
nginx.conf.  Returns (exit_code, combined_output).  The error_log of the
config is redirected to a separate file so that an expected [emerg] does
not trip the teardown check.

=cut

sub test_config {
    my ($self, $name) = @_;
    $name //= 'nginx.conf';

    my $d = $self->{dir};
    my $conf = $self->read_file($name);
    $conf =~ s/\Q$d\E\/error\.log/$d\/nginx-t.error.log/g;
    $conf =~ s/\Q$d\E\/nginx\.pid/$d\/nginx-t.pid/g;
    $self->write_file("nginx-t.conf", $conf);
    unlink "$d/nginx-t.log";

    my %env = $self->_nginx_env();
    local @ENV{keys %env} = values %env;

    my $out = `$NGINX -t -p $d/ -c nginx-t.conf -e $d/nginx-t.log 2>&1`;
    my $code = $? >> 8;
    $out .= $self->read_file('nginx-t.log');

    return ($code, $out);
}

=head2 run()

Starts nginx in the foreground (daemon off) with stderr in stderr.log,
waits for the pid file and for every C<listen 127.0.0.1:PORT> to accept.
Dies with the error.log tail if nginx does not come up.  Returns $self.

=cut

sub run {
    my ($self) = @_;
    my $d = $self->{dir};

    die "nginx already running\n" if $self->{pid};
    unlink "$d/nginx.pid";

    my %env = $self->_nginx_env();

    my $pid = fork();
    die "fork: $!\n" unless defined $pid;

    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', "$d/stderr.log" or POSIX::_exit(126);
        open STDERR, '>>&', \*STDOUT or POSIX::_exit(126);
        @ENV{keys %env} = values %env;
        $SIG{$_} = 'DEFAULT' for qw(PIPE INT TERM HUP);
        { no warnings 'exec';
          exec $NGINX, '-p', "$d/", '-c', 'nginx.conf', '-e', "$d/error.log"; }
        POSIX::_exit(127);
    }

    $self->{pid} = $pid;

    my @ports = $self->_listen_ports();
    my $deadline = time() + 10;

    while (time() < $deadline) {
        if (waitpid($pid, WNOHANG) == $pid) {
            my $status = $?;
            $self->{pid} = undef;
            die "nginx exited during startup (status $status)\n"
                . $self->_log_tail();
        }
        if (-s "$d/nginx.pid" && !grep { !_can_connect($_) } @ports) {
            return $self;
        }
        sleep 0.05;
    }

    $self->stop();
    die "nginx did not start within 10s\n" . $self->_log_tail();
}

sub _listen_ports {
    my ($self) = @_;
    my $conf = $self->read_file('nginx.conf');
    my %p;
    $p{$1} = 1 while $conf =~ /^\s*listen\s+127\.0\.0\.1:(\d+)/mg;
    return sort keys %p;
}

sub _can_connect {
    my ($port) = @_;
    my $s = IO::Socket::IP->new(
        PeerHost => '127.0.0.1', PeerPort => $port, Proto => 'tcp',
        Timeout => 1,
    );
    return 0 unless $s;
    close $s;
    return 1;
}

sub _log_tail {
    my ($self) = @_;
    my $out = '';
    for my $f ('error.log', 'stderr.log') {
        my @l = split /\n/, $self->read_file($f);
        @l = grep { !/\[debug\]/ } @l;
        @l = @l[-30 .. -1] if @l > 30;
        $out .= "--- $f (tail, no debug) ---\n" . join("\n", @l) . "\n";
    }
    return $out;
}

=head2 stop()

Stops nginx: QUIT, then TERM after 10s, then KILL.  Returns $self.

=cut

sub stop {
    my ($self) = @_;
    my $pid = $self->{pid} or return $self;

    my @steps = (['QUIT', 10], ['TERM', 5], ['KILL', 5]);
    for my $step (@steps) {
        my ($sig, $wait) = @$step;
        kill $sig, $pid;
        my $deadline = time() + $wait;
        while (time() < $deadline) {
            if (waitpid($pid, WNOHANG) == $pid) {
                $self->{pid} = undef;
                $self->{stop_problem} = "nginx needed SIG$sig to stop"
                    if $sig ne 'QUIT';
                return $self;
            }
            sleep 0.05;
        }
    }

    $self->{pid} = undef;
    $self->{stop_problem} = "nginx master $pid did not exit";
    return $self;
}

=head2 reload()

Sends HUP to the master and waits (up to 10s) until the new worker
processes have been started and every old one has logged "gracefully
shutting down" (or exited): it closes its listening sockets right then,
so from then on every new connection is served with the new
configuration.  (nginx signals the old workers only 100 ms after it has
started the new ones.)  Returns true on success, false on timeout (e.g.
the new configuration was rejected).

=cut

sub reload {
    my ($self) = @_;
    my $pid = $self->{pid} or die "nginx is not running\n";

    my $log = $self->read_file('error.log');
    my @old = $self->_workers($log);
    my $before = () = $log =~ /start worker process \d+/g;

    kill 'HUP', $pid;

    return $self->wait_for_file('error.log', sub {
        my $n = () = $_[0] =~ /start worker process \d+/g;
        return $n >= $before + @old && !grep {
            $_[0] !~ /\] $_#\d+: gracefully shutting down$
                      |worker\ process\ $_\ exited/mx } @old;
    });
}

# the current workers: the last worker_processes started, as logged
sub _workers {
    my ($self, $log) = @_;
    my ($n) = $self->read_file('nginx.conf')
        =~ /^\s*worker_processes\s+(\d+);/m;
    my @workers = $log =~ /start worker process (\d+)/g;
    splice(@workers, 0, @workers - ($n // 1)) if @workers > ($n // 1);
    return @workers;
}

=head2 reopen()

What logrotate does after renaming the files: sends USR1 to the master
and waits (up to 10 s) until the master and every current worker (the
last worker_processes started) have logged "reopening logs".  A worker
logs it just before it reopens its files, and serves nothing in between,
so a request sent after reopen() returns is written to the new files.
Returns true on success, false on timeout.

=cut

sub reopen {
    my ($self) = @_;
    my $pid = $self->{pid} or die "nginx is not running\n";

    my $log = $self->read_file('error.log');
    my @workers = $self->_workers($log);
    my $from = length $log;

    kill 'USR1', $pid;

    return $self->wait_for_file('error.log', sub {
        my $new = substr($_[0], $from);
        return !grep { $new !~ /^\S+ \S+ \[notice\] $_#\d+: reopening logs$/m }
            $pid, @workers;
    });
}

=head2 wait_for($cond, [$timeout])

Calls $cond every 50 ms until it returns true, for at most $timeout
seconds (default 10), and returns its last value: the way to wait for
something nginx does after a response (the log phase of a request whose
connection lingers, a flush timer, a reopen).  Never a fixed sleep
before a comparison.

=cut

sub wait_for {
    my ($self, $cond, $timeout) = @_;
    my $deadline = time() + ($timeout // 10);

    while (1) {
        my $v = $cond->();
        return $v if $v || time() >= $deadline;
        sleep 0.05;
    }
}

=head2 wait_for_file($name, $cond, [$timeout])

wait_for() on a file of the test directory: $cond gets its contents
(read_file) each time.  Returns $cond's last value.

    my @recs;
    $t->wait_for_file('audit.log', sub {
        @recs = split /\n/, $_[0];
        return @recs >= 3;
    });

=cut

sub wait_for_file {
    my ($self, $name, $cond, $timeout) = @_;
    return $self->wait_for(sub { $cond->($self->read_file($name)) },
        $timeout);
}

=head2 wait_for_log($re, [$timeout, [$name]])

Waits until error.log (or $name) has a line matching $re.  Returns the
matching lines (empty on timeout).

=cut

sub wait_for_log {
    my ($self, $re, $timeout, $name) = @_;
    my @lines;
    $self->wait_for_file($name // 'error.log', sub {
        @lines = grep { /$re/ } split /\n/, $_[0];
        return scalar @lines;
    }, $timeout);
    return @lines;
}

=head2 audit_record($id, [$file])

Waits (up to 10 s) for the audit record of request id $id in audit.log
(or $file) and returns it decoded, or undef.

=cut

sub audit_record {
    my ($self, $id, $file) = @_;
    my $rec;
    require JSON::PP;
    $self->wait_for_file($file // 'audit.log', sub {
        for (split /\n/, $_[0]) {
            my $j = eval { JSON::PP->new->utf8->decode($_) } or next;
            if (($j->{id} // '') eq ($id // '-')) { $rec = $j; return 1 }
        }
        return 0;
    });
    return $rec;
}

=head2 log_entries([$name])

error.log (or $name) without nginx's debug entries, which quote request
lines and some of which go on over several lines: only the entries at
another level, one per line.

=cut

sub log_entries {
    my ($self, $name) = @_;
    return join "\n", grep { m{^\d{4}/\d\d/\d\d [\d:]+ \[(?!debug)} }
        split /\n/, $self->read_file($name // 'error.log');
}

=head2 plan($n)

Declares $n tests plus 1 for the automatic teardown log check.
Returns $self.

=cut

sub plan {
    my ($self, $n) = @_;
    $self->{planned} = 1;
    Test::More::plan(tests => $n + 1);
    return $self;
}

=head2 done_testing()

Alternative to plan(): stops nginx, runs the teardown check, then calls
Test::More::done_testing.

=cut

sub done_testing {
    my ($self) = @_;
    $self->{planned} = 1;
    $self->stop();
    $self->check_logs();
    Test::More::done_testing();
}

=head2 check_logs()

The teardown assertion (run automatically at the end): error.log and
stderr.log have no [alert]/[crit]/[emerg], no [error] from the module
(nginx's own, such as a refused upstream connection a test provokes, are
allowed), no sanitizer output, and no non-empty sanitizer log file exists.  Stops nginx first.

=cut

sub check_logs {
    my ($self) = @_;
    return if $self->{checked}++;
    $self->stop();

    my $d = $self->{dir};
    my @problems;
    push @problems, $self->{stop_problem} if $self->{stop_problem};

    for my $f ('error.log', 'stderr.log') {
        for my $line (split /\n/, $self->read_file($f)) {
            push @problems, "$f: $line"
                if $line =~ /\[(?:alert|crit|emerg)\]/
                || $line =~ /\[error\] .*\bwelby: /
                || $line =~ /AddressSanitizer|LeakSanitizer|ThreadSanitizer/
                || $line =~ /runtime error:/
                || $line =~ /^(?:==\d+==\s*)?ERROR: /;
        }
    }

    for my $f (glob("$d/sanitizer/asan.* $d/sanitizer/ubsan.*")) {
        next unless -s $f;
        push @problems, "sanitizer report $f:\n" . $self->read_file($f);
    }

    Test::More::ok(!@problems,
        'teardown: no alert/crit/emerg, no welby error, no sanitizer report')
        or Test::More::diag(join("\n", @problems > 20
            ? (@problems[0 .. 19], '...') : @problems));
}

END {
    my $exit = $?;
    for my $t (@INSTANCES) {
        if ($t->{planned}) {
            $t->check_logs();
        } else {
            $t->stop();
        }
    }
    $? = $exit;
}

=head1 HTTP CLIENT FUNCTIONS

All connect to 127.0.0.1.  C<port> defaults to %%PORT_8080%% of the most
recently created harness object.  C<timeout> (seconds, default 10).

=head2 http($raw_request, %opts)

Sends the bytes exactly as given and returns the raw response (read until
the server closes; use C<Connection: close>).  C<local> is the source
address (default 127.0.0.1), for tests of trusted and untrusted peers.
With C<ssl =E<gt> 1> the
connection uses TLS; any C<SSL_*> option is passed to IO::Socket::SSL
(default C<SSL_verify_mode =E<gt> SSL_VERIFY_NONE>).  C<body> may be sent
after a pause with C<sleep =E<gt> seconds> (then C<$raw_request> is the head).

=cut

sub http {
    my ($request, %opts) = @_;

    my $port = $opts{port} // ($LAST ? $LAST->port(8080) : 8080);
    my $timeout = $opts{timeout} // 10;

    my $s;
    if ($opts{ssl}) {
        require IO::Socket::SSL;
        my %ssl = map { $_ => $opts{$_} } grep { /^SSL_/ } keys %opts;
        $ssl{SSL_verify_mode} //= IO::Socket::SSL::SSL_VERIFY_NONE();
        $s = IO::Socket::SSL->new(
            PeerHost => '127.0.0.1', PeerPort => $port, Timeout => $timeout,
            ($opts{local} ? (LocalHost => $opts{local}) : ()),
            %ssl,
        ) or do {
            Test::More::diag("TLS connect to port $port failed: "
                . ($IO::Socket::SSL::SSL_ERROR || $!));
            return undef;
        };
    } else {
        $s = IO::Socket::IP->new(
            PeerHost => '127.0.0.1', PeerPort => $port, Proto => 'tcp',
            Timeout => $timeout,
            ($opts{local} ? (LocalHost => $opts{local}) : ()),
        ) or do {
            Test::More::diag("connect to port $port failed: $!");
            return undef;
        };
    }

    binmode $s;
    _write_all($s, $request);
    if (defined $opts{body}) {
        sleep $opts{sleep} if $opts{sleep};
        _write_all($s, $opts{body});
    }

    my $reply = '';
    my $sel = IO::Select->new($s);
    my $deadline = time() + $timeout;

    while (1) {
        my $left = $deadline - time();
        if ($left <= 0) {
            Test::More::diag("http: timeout reading from port $port");
            last;
        }
        # TLS may have buffered data even when the socket is not readable
        next unless ($opts{ssl} && $s->pending) || $sel->can_read($left);
        my $n = sysread($s, my $buf, 65536);
        if (!defined $n) {
            next if $! == EINTR || $! == EAGAIN
                || ($opts{ssl} && $IO::Socket::SSL::SSL_ERROR
                    && $IO::Socket::SSL::SSL_ERROR
                       =~ /WANT_READ|WANT_WRITE/);
            last;
        }
        last if $n == 0;
        $reply .= $buf;
    }

    close $s;
    return $reply;
}

sub _write_all {
    my ($s, $data) = @_;
    my $off = 0;
    while ($off < length $data) {
        my $n = syswrite($s, $data, length($data) - $off, $off);
        if (!defined $n) {
            next if $! == EINTR || $! == EAGAIN;
            return;
        }
        $off += $n;
    }
}

=head2 https($raw_request, %opts)

http() over TLS.

=cut

sub https { my $r = shift; return http($r, ssl => 1, @_) }

=head2 http_req(%opts)

Builds and sends one HTTP/1.1 request with C<Connection: close>:
C<method> (GET), C<uri> ('/'), C<host> ('localhost'), C<headers> (array
ref of "Name: value" strings or [name, value] pairs, sent in order),
C<body> (adds Content-Length unless a Content-Length/Transfer-Encoding
header is given).  Other options as for http().  Returns the raw response.

=cut

sub http_req {
    my (%o) = @_;
    my $method = delete $o{method} // 'GET';
    my $uri    = delete $o{uri}    // '/';
    my $host   = delete $o{host}   // 'localhost';
    my $hdrs   = delete $o{headers} // [];
    my $body   = delete $o{body};

    my $req = "$method $uri HTTP/1.1\r\nHost: $host\r\nConnection: close\r\n";
    my $has_len = 0;
    for my $h (@$hdrs) {
        my $line = ref $h ? "$h->[0]: $h->[1]" : $h;
        $has_len = 1 if $line =~ /^(?:content-length|transfer-encoding)\s*:/i;
        $req .= "$line\r\n";
    }
    $req .= "Content-Length: " . length($body) . "\r\n"
        if defined $body && !$has_len;
    $req .= "\r\n";
    $req .= $body if defined $body;

    return http($req, %o);
}

=head2 http_get($uri, %opts) / https_get($uri, %opts)

GET shortcut of http_req (same options: port, headers, host, ...).

=cut

sub http_get  { my $u = shift; return http_req(uri => $u, @_) }
sub https_get { my $u = shift; return http_req(uri => $u, ssl => 1, @_) }

=head2 dechunk($body)

Decodes a chunked transfer-encoded body (trailers ignored).  Returns
undef if the encoding is broken or incomplete.

=cut

sub dechunk {
    my ($in) = @_;
    my $out = '';
    while (1) {
        $in =~ s/^([0-9a-fA-F]+)[^\r\n]*\r\n// or return undef;
        my $len = hex $1;
        return $out if $len == 0;
        return undef if length($in) < $len + 2;
        $out .= substr($in, 0, $len);
        return undef unless substr($in, $len, 2) eq "\r\n";
        substr($in, 0, $len + 2) = '';
    }
}

=head2 parse_response($raw)

Returns a Welby::Nginx::Response (undef if $raw is undef or has no header
terminator): methods status, reason, protocol, header($name) (first value
in scalar context, all in list context), header_count($name),
header_names, headers (list of [name, value] in order), body (de-chunked
when Transfer-Encoding is chunked), raw_body, head, raw, json.

=cut

sub parse_response {
    my ($raw) = @_;
    return undef unless defined $raw;

    my $i = index($raw, "\r\n\r\n");
    return undef if $i < 0;

    my $head = substr($raw, 0, $i);
    my $body = substr($raw, $i + 4);
    my @lines = split /\r\n/, $head;
    my $status_line = shift @lines;

    my ($proto, $status, $reason) =
        $status_line =~ m{^(HTTP/\d\.\d)\s+(\d{3})(?:\s+(.*))?$}
        or return undef;

    my @headers;
    for (@lines) {
        my ($n, $v) = /^([^:]+):[ \t]*(.*?)[ \t]*$/ or next;
        push @headers, [$n, $v];
    }

    my $self = bless {
        raw => $raw, head => $head, proto => $proto, status => $status,
        reason => $reason // '', headers => \@headers, raw_body => $body,
    }, 'Welby::Nginx::Response';

    $self->{body} = $body;
    if (grep { lc $_ eq 'chunked' }
        map { split /\s*,\s*/ } $self->header('Transfer-Encoding'))
    {
        $self->{body} = dechunk($body);
    }

    return $self;
}

package Welby::Nginx::Response;

sub status   { $_[0]{status} }
sub reason   { $_[0]{reason} }
sub protocol { $_[0]{proto} }
sub body     { $_[0]{body} }
sub raw_body { $_[0]{raw_body} }
sub head     { $_[0]{head} }
sub raw      { $_[0]{raw} }
sub headers  { @{ $_[0]{headers} } }

sub header {
    my ($self, $name) = @_;
    my @v = map { $_->[1] } grep { lc $_->[0] eq lc $name } @{ $self->{headers} };
    return wantarray ? @v : $v[0];
}

sub header_count {
    my ($self, $name) = @_;
    return scalar grep { lc $_->[0] eq lc $name } @{ $self->{headers} };
}

sub header_names {
    my ($self) = @_;
    my %seen;
    return grep { !$seen{lc $_}++ } map { $_->[0] } @{ $self->{headers} };
}

# the request id the gateway answered with
sub request_id { scalar $_[0]->header('X-Request-Id') }

# the reason code of a refusal's OperationOutcome, or undef
sub reason_code {
    my ($self) = @_;
    my $j = $self->json;
    return ref $j eq 'HASH' ? $j->{issue}[0]{details}{coding}[0]{code} : undef;
}

# decoded JSON body, or undef if the body is not valid JSON
sub json {
    my ($self) = @_;
    require JSON::PP;
    my $d = eval { JSON::PP->new->utf8->decode($self->{body} // '') };
    return $d;
}

1;
