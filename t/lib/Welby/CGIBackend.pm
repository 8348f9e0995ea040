package Welby::CGIBackend;

# A FastCGI, SCGI or uwsgi backend for the end-to-end tests (own code:
# Debian has no Perl module for the last two, and this needs only the
# parameters).  It answers every request with 200 application/json:
#
#   {"params": [[name, value], ...]}      in the order nginx sent them
#
# so a test sees exactly which HTTP_* parameters a backend would get,
# repeated ones included.
#
#   use Welby::CGIBackend;
#   my $b = Welby::CGIBackend->start(proto => 'fastcgi', port => $port);
#   ... fastcgi_pass 127.0.0.1:$port; ...
#   $b->stop();           # also done at exit
#
# The backend is a forked child that serves one connection at a time and
# closes each after its answer (nginx's default, no keepalive).

use strict;
use warnings;

use IO::Socket::IP;
use JSON::PP ();
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep time);

my @RUNNING;

sub start {
    my ($class, %o) = @_;
    my $proto = $o{proto} or die "proto required\n";
    my $port = $o{port} or die "port required\n";

    die "unknown proto $proto\n"
        unless $proto =~ /^(?:fastcgi|scgi|uwsgi)$/;

    my $listen = IO::Socket::IP->new(LocalHost => '127.0.0.1',
        LocalPort => $port, Proto => 'tcp', ReuseAddr => 1, Listen => 16)
        or die "listen 127.0.0.1:$port: $!\n";

    my $pid = fork() // die "fork: $!\n";

    if ($pid == 0) {
        $SIG{TERM} = sub { POSIX::_exit(0) };
        while (my $c = $listen->accept()) {
            eval { _serve($proto, $c) };
            close $c;
        }
        POSIX::_exit(0);    # not END: this process must not stop nginx
    }

    close $listen;

    my $self = bless { pid => $pid, port => $port, proto => $proto },
        $class;
    push @RUNNING, $self;
    return $self;
}

sub stop {
    my ($self) = @_;
    my $pid = $self->{pid} or return;

    kill 'TERM', $pid;
    my $deadline = time() + 5;
    while (time() < $deadline) {
        last if waitpid($pid, WNOHANG) == $pid;
        sleep 0.02;
    }
    $self->{pid} = undef;
}

END {
    $_->stop() for @RUNNING;
}

sub _read_n {
    my ($c, $n) = @_;
    my $buf = '';
    while (length($buf) < $n) {
        my $got = sysread($c, $buf, $n - length($buf), length($buf));
        die "short read\n" unless $got;
    }
    return $buf;
}

sub _write_all {
    my ($c, $data) = @_;
    while (length $data) {
        my $n = syswrite($c, $data);
        die "write: $!\n" unless defined $n;
        substr($data, 0, $n) = '';
    }
}

sub _answer {
    my ($params) = @_;
    my $body = JSON::PP->new->ascii->encode({ params => $params }) . "\n";
    return "Status: 200 OK\r\nContent-Type: application/json\r\n"
        . "Content-Length: " . length($body) . "\r\n\r\n" . $body;
}

sub _serve {
    my ($proto, $c) = @_;
    binmode $c;
    my @params;

    if ($proto eq 'fastcgi') {
        my ($id, $stream, $stdin_done) = (1, '', 0);
        my $params_done = 0;

        until ($params_done && $stdin_done) {
            my ($ver, $type, $rid, $len, $pad) =
                unpack('CCnnC', _read_n($c, 8));
            my $content = $len ? _read_n($c, $len) : '';
            _read_n($c, $pad) if $pad;
            $id = $rid;

            if ($type == 4) {                   # FCGI_PARAMS
                if ($len == 0) { $params_done = 1; next }
                $stream .= $content;
            } elsif ($type == 5) {              # FCGI_STDIN
                $stdin_done = 1 if $len == 0;
            }
        }

        while (length $stream) {
            my @l;
            for (1, 2) {
                my $b = unpack('C', $stream);
                if ($b & 0x80) {
                    push @l, unpack('N', $stream) & 0x7fffffff;
                    substr($stream, 0, 4) = '';
                } else {
                    push @l, $b;
                    substr($stream, 0, 1) = '';
                }
            }
            push @params, [substr($stream, 0, $l[0]),
                substr($stream, $l[0], $l[1])];
            substr($stream, 0, $l[0] + $l[1]) = '';
        }

        my $out = _answer(\@params);
        my $rec = '';
        while (length $out) {
            my $chunk = substr($out, 0, 65535, '');
            $rec .= pack('CCnnCC', 1, 6, $id, length($chunk), 0, 0) . $chunk;
        }
        $rec .= pack('CCnnCC', 1, 6, $id, 0, 0, 0);
        $rec .= pack('CCnnCC', 1, 3, $id, 8, 0, 0) . pack('NCx3', 0, 0);
        _write_all($c, $rec);
        return;
    }

    if ($proto eq 'scgi') {
        my $len = '';
        while ((my $ch = _read_n($c, 1)) ne ':') { $len .= $ch }
        my $head = _read_n($c, $len);
        _read_n($c, 1);                         # ','
        my @kv = split /\0/, $head, -1;
        pop @kv;                                # after the last NUL
        push @params, [splice(@kv, 0, 2)] while @kv;
    } else {                                    # uwsgi
        my ($m1, $size, $m2) = unpack('CvC', _read_n($c, 4));
        my $vars = _read_n($c, $size);
        while (length $vars) {
            my $kl = unpack('v', $vars);
            my $k = substr($vars, 2, $kl);
            my $vl = unpack('v', substr($vars, 2 + $kl, 2));
            my $v = substr($vars, 4 + $kl, $vl);
            push @params, [$k, $v];
            substr($vars, 0, 4 + $kl + $vl) = '';
        }
    }

    my %p = map { $_->[0] => $_->[1] } @params;
    _read_n($c, $p{CONTENT_LENGTH}) if $p{CONTENT_LENGTH};
    _write_all($c, _answer(\@params));
}

1;
