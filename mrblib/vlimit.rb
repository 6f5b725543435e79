# Nginx::Vlimit.stats(zone): the zone's stats (as vlimit_stats shows them) as a Hash.
class Nginx
  class Vlimit
    def self.stats(zone)
      JSON.parse(__stats_json(zone))
    end
  end
end
