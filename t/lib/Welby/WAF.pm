package Welby::WAF;

# What t/41-waf-attacks.t and t/42-waf-benign.t share: reading the
# corpora of t/waf/, the directives of a WAF location, sending one case
# and finding the rules that matched it.
#
# The WAF runs in ngx_http_welby_module (welby_waf, welby_waf_rules);
# until a build of the module knows those directives, the same
# libmodsecurity and the same rule files run through the ModSecurity-nginx
# connector (libnginx-mod-http-modsecurity), and the matched rules are
# read from its error.log lines instead of the audit record.  waf_mode()
# says which; the tests print it.

use strict;
use warnings;

use Exporter qw(import);
use JSON::XS ();
use Welby::Nginx qw(http parse_response);

our @EXPORT_OK = qw(read_corpus waf_mode waf_conf waf_load send_case
    matched_rules);

our $CONNECTOR = '/usr/lib/nginx/modules/ngx_http_modsecurity_module.so';

our @RULES = map { "$Welby::Nginx::REPO/rules/$_" }
    qw(welby.conf welby-fhir.conf welby-crs.conf);

# Blocks of "=== <family> <where> <what>", an optional "! <status> <who>",
# the request line and headers, an empty line, the body.
sub read_corpus {
    my ($file) = @_;
    open my $fh, '<:raw', $file or die "$file: $!\n";
    my (@cases, $c, $in_body);

    while (my $l = <$fh>) {
        $l =~ s/\r?\n\z//;
        if ($l =~ /^=== (\S+) (\S+) (.*)$/) {
            push @cases, $c if $c;
            $c = { family => $1, where => $2, what => $3, head => [],
                   status => 403, who => 'waf' };
            $in_body = 0;
            next;
        }
        next unless $c;
        if ($in_body) {
            $c->{body} .= (defined $c->{body} ? "\n" : '') . $l;
        } elsif (!@{ $c->{head} } && $l =~ /^! (\d{3}) (\S+)$/) {
            @$c{qw(status who)} = ($1, $2);
        } elsif ($l eq '') {
            $in_body = 1 if @{ $c->{head} };
        } else {
            push @{ $c->{head} }, $l;
        }
    }
    push @cases, $c if $c;

    for my $c (@cases) {
        $c->{body} =~ s/\n+\z// if defined $c->{body};
        $c->{body} = undef if defined $c->{body} && $c->{body} eq '';
        for (@{ $c->{head} }, $c->{body} // ()) {
            s/\{CR\}/\r/g;
            s/\{LF\}/\n/g;
        }
    }
    return @cases;
}

# "module" when the built module accepts welby_waf, else "connector"
sub waf_mode {
    my ($t) = @_;
    return $t->{welby_waf_mode} if $t->{welby_waf_mode};

    $t->write_file_expand('probe.conf', <<"END");
%%TEST_GLOBALS%%
events {}
http {
    server {
        listen 127.0.0.1:%%PORT_8080%%;
        location / { welby_waf on; welby_waf_rules $RULES[0]; }
    }
}
END
    my ($code) = $t->test_config('probe.conf');
    return $t->{welby_waf_mode} = $code == 0 ? 'module' : 'connector';
}

# the directives that switch the WAF on in a location
sub waf_conf {
    my ($t, @extra) = @_;
    if (waf_mode($t) eq 'module') {
        return join ' ', 'welby_waf on;',
            map { "welby_waf_rules $_;" } @RULES, @extra;
    }
    $t->write_file('waf-all.conf',
        join '', map { "Include $_\n" } @RULES, @extra);
    return 'modsecurity on; modsecurity_rules_file '
        . $t->testdir() . '/waf-all.conf;';
}

# the connector's load_module line, "" with the module
sub waf_load {
    my ($t) = @_;
    return waf_mode($t) eq 'module' ? '' : "load_module $CONNECTOR;";
}

# sends one case on its own connection; returns the parsed response
sub send_case {
    my ($t, $c, $id, %opts) = @_;
    my ($line, @h) = @{ $c->{head} };
    $line .= ' HTTP/1.1' unless $line =~ m{ HTTP/[0-9.]+$};
    my $body = $c->{body};
    my %has = map { /^([^:]+):/ ? (lc $1 => 1) : () } @h;

    my $req = "$line\r\n";
    $req .= "Host: fhir.test\r\n" unless $has{host};
    $req .= "Connection: close\r\nX-Case: $id\r\n";
    $req .= "$_\r\n" for @h;
    $req .= 'Content-Length: ' . length($body) . "\r\n"
        if defined $body && !$has{'content-length'}
            && !$has{'transfer-encoding'};
    $req .= "\r\n";
    $req .= $body if defined $body;

    return parse_response(http($req, %opts));
}

# The ids of the rules that matched one request, in match order, and the
# reason it was refused for:
#   module:    its audit record (found by request id, with a deadline):
#              waf.rules, reason
#   connector: the connector's error.log lines written since $log_from
#              (the size of error.log before the request was sent); the
#              connector logs as it evaluates, before the response
#              leaves, and cases are sent one at a time, so the lines
#              after $log_from are this request's and complete.
sub matched_rules {
    my ($t, $r, $log_from) = @_;

    if (waf_mode($t) eq 'module') {
        my $rid = $r && $r->header('X-Request-Id');
        return { rules => [], reason => 'no-request-id' } unless $rid;
        my $rec;
        $t->wait_for(sub {
            for (split /\n/, $t->read_file('audit.log')) {
                next unless index($_, "\"$rid\"") >= 0;
                my $a = eval { JSON::XS->new->decode($_) } or next;
                $rec = $a if ($a->{id} // '') eq $rid;
            }
            return $rec;
        });
        return { rules => [], reason => 'no-audit-record' } unless $rec;
        return { rules => ($rec->{waf} ? $rec->{waf}{rules} : undef) // [],
                 reason => $rec->{reason} // '-' };
    }

    my $log = substr($t->read_file('error.log'), $log_from // 0);
    my (@ids, $denied);
    for my $l (split /\n/, $log) {
        next unless $l =~ /ModSecurity: (Warning|Access denied)/;
        $denied = 1 if $1 eq 'Access denied';
        push @ids, $l =~ /\[id "(\d+)"\]/g;
    }
    return { rules => [ grep { $_ ne '440999' } @ids ],
             reason => $denied ? 'waf_block' : '-' };
}

1;
