package Welby::WAF;

# What t/41-waf-attacks.t and t/42-waf-benign.t share: reading the
# corpora of t/waf/, the directives of a WAF location, sending one case
# and finding the rules that matched it.
#
# The matched rules of a request are read from its audit record (the
# "waf" member), found by the response's X-Request-Id.

use strict;
use warnings;

use Exporter qw(import);
use JSON::XS ();
use Welby::Nginx qw(http parse_response);

our @EXPORT_OK = qw(read_corpus waf_conf send_case matched_rules);

our @RULES = map { "$Welby::Nginx::REPO/rules/$_" }
    qw(welby.conf welby-fhir.conf welby-crs.conf);

# Blocks of "=== <family> <where> <what>", an optional
# "! <status> <who> [<reason>]",
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
        } elsif (!@{ $c->{head} } && $l =~ /^! (\d{3}) (\S+)(?: (\S+))?$/) {
            @$c{qw(status who reason)} = ($1, $2, $3);
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

# the directives that switch the WAF on in a location, with the shipped
# rules (and @extra files after them)
sub waf_conf {
    my (@extra) = @_;
    return join ' ', 'welby_waf on;',
        map { "welby_waf_rules $_;" } @RULES, @extra;
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
# reason it was refused for, from its audit record (found by request id,
# with a deadline: the record is written in the log phase).
sub matched_rules {
    my ($t, $r) = @_;

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

1;
